"""Processes the backend forks from its warm process: telling one from a later process
with its pid, and ending one."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused pid apart), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def exit_with(body: Callable[[], int | None]) -> NoReturn:
    """End a forked child: its exit status is what ``body()`` returns (0 for None), 1 when
    it raised (the traceback printed); the parent's exit handlers never run here."""
    code = 1
    try:
        result = body()
        code = 0 if result is None else result
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
