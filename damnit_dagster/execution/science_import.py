"""The science stack's first import, one process per host at a time.

``extra`` builds a pint unit registry whose cache (``~/.cache/pint``) pint writes
non-atomically. Two processes importing ``extra`` for the first time together (two
backends starting on one host, or a code server and its run-launcher zygote) can read a
half-written cache and fail with ``EOFError``; a code location that met it served no
variables. :func:`import_science_stack` imports those modules under a lock in the user's
cache folder, so the cache is whole before anyone reads it.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import sys
from pathlib import Path

import platformdirs
from filelock import FileLock

log = logging.getLogger(__name__)

#: Modules whose first import writes a shared cache non-atomically.
RACY_MODULES = ("extra",)


def import_lock_path() -> Path:
    """The host-wide (per user) lock file taken around the first import."""
    return platformdirs.user_cache_path("damnit-dagster", appauthor=False) / "first-import.lock"


@contextlib.contextmanager
def first_import_lock(what: str):
    """Hold the host lock (``what`` names the work, for the warning when the lock cannot
    be taken: no writable cache folder; then the work goes on without it)."""
    lock_path = import_lock_path()
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_path)
        lock.acquire()
    except OSError as e:
        log.warning("%s without the lock %s: %s", what, lock_path, e)
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def import_science_stack(modules=RACY_MODULES) -> None:
    """Import ``modules`` (those installed and not yet imported) under the host lock.

    A module that fails to import is left for the user's code to meet and report.
    """
    missing = [m for m in modules if m not in sys.modules and importlib.util.find_spec(m)]
    if not missing:
        return
    with first_import_lock(f"Importing {', '.join(missing)}"):
        for name in missing:
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - reported when the user's code imports it
                log.warning("Importing %s failed: %s: %s", name, type(e).__name__, e)
