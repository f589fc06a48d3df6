"""Describe a context file (its variables, dependencies, code versions), in this
interpreter or in the folder's ``context_python``, and tell whether it changed."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from damnit_dagster.execution.environment import runner_env

#: Seconds allowed for describing a context file in a subprocess.
DESCRIBE_TIMEOUT = 300


def file_sha(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it does not exist."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def read_json(path: Path):
    """The JSON in ``path``, or None when it is missing or not (yet) whole."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def describe_file(path: Path, damnit_dir: Path, context_python: str | None = None) -> dict:
    """``{"ok": True, "variables": [...]}`` or ``{"ok": False, "problems": [...]}``.

    With ``context_python`` the file is loaded by ``python -m context_loader describe``
    in that interpreter (cwd = the DAMNIT folder); otherwise in this process, with every
    exception of the user's code caught. Either way the modules in the DAMNIT folder are
    importable from the file, as in DAMNIT.
    """
    if context_python:
        return _describe_subprocess(path, damnit_dir, context_python)
    from context_loader.contextfile import ContextFile
    from context_loader.errors import ContextFileErrors
    from damnit_dagster.execution.science_import import import_science_stack

    import_science_stack()
    try:
        ctx = ContextFile.from_path(path, damnit_dir)
        return {"ok": True, "variables": ctx.describe()}
    except ContextFileErrors as e:
        return {"ok": False, "problems": list(e.problems)}
    except (Exception, SystemExit, KeyboardInterrupt) as e:  # the user's top-level code
        return {"ok": False, "problems": [f"{path}: {type(e).__name__}: {e}"]}


def describe_apart(path: Path, damnit_dir: Path, context_python: str | None = None) -> dict:
    """:func:`describe_file` in a process of its own (``context_python``, default this
    interpreter), so that this one never imports the user's code or the science stack
    it uses: the code server, which keeps whatever it imports for as long as it serves.
    Under the host's first-import lock, as that process may import ``extra`` first."""
    from damnit_dagster.execution.science_import import first_import_lock

    with first_import_lock(f"Describing {path}"):
        return _describe_subprocess(path, damnit_dir, context_python or sys.executable)


def _describe_subprocess(path: Path, damnit_dir: Path, context_python: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="damnit-describe-") as tmp:
        out = Path(tmp) / "describe.json"
        cmd = [context_python, "-m", "context_loader", "describe", str(path), "--out", str(out)]
        try:
            proc = subprocess.run(cmd, cwd=damnit_dir, env=runner_env(), capture_output=True,
                                  text=True, timeout=DESCRIBE_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"ok": False, "problems": [f"{path}: could not run {context_python}: {e}"]}
        result = read_json(out)
        if result is None:
            tail = (proc.stderr or proc.stdout).strip()[-2000:]
            return {"ok": False, "problems": [
                f"{path}: describing with {context_python} failed "
                f"(exit {proc.returncode}): {tail}"]}
        return result
