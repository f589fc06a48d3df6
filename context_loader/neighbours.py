"""Modules next to a context file are importable from it, as under DAMNIT.

DAMNIT's runner starts in the DAMNIT folder with that folder on ``sys.path``, so a context
file can ``from helper_mod import offset`` with ``helper_mod.py`` beside it. Loading a
context file here does the same (:func:`make_importable`), and imports those modules
afresh on every load: a process that loaded the file before (a warm server, a process
forked from one) sees an edited neighbour module, not a stale copy.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


def make_importable(folder) -> None:
    """Put ``folder`` first on ``sys.path`` (it stays there, as in DAMNIT's runner, for
    imports inside variables) and forget the modules already imported from it, so that
    the next import reads the files as they are now."""
    folder = os.path.realpath(folder)
    for name in [n for n, m in list(sys.modules.items()) if _imported_from(n, m, folder)]:
        del sys.modules[name]
    while folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    importlib.invalidate_caches()  # a file created since the last import is found


#: Modules never imported afresh: those the context file's classes come from.
_OURS = {__name__.partition(".")[0], "damnit_ctx"}


def _imported_from(name: str, module, folder: str) -> bool:
    """Whether module ``name`` was imported from a file or package in ``folder``."""
    file = getattr(module, "__file__", None)
    if not file or name.partition(".")[0] in _OURS:
        return False
    path = Path(file)
    depth = name.count(".") + (path.stem == "__init__")
    if depth >= len(path.parents) or not str(path).startswith(folder):
        return False
    return os.path.realpath(path.parents[depth]) == folder
