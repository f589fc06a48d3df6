"""Modules next to a context file are importable from it, as under DAMNIT.

DAMNIT's runner starts in the DAMNIT folder with that folder on ``sys.path``, so a context
file can ``from helper_mod import offset`` with ``helper_mod.py`` beside it. Loading a
context file here does the same (:func:`make_importable`), and imports those modules
afresh on every load: a process that loaded the file before (a warm server, a process
forked from one) sees an edited neighbour module, not a stale copy, nor the module of the
same name next to another folder's context file.
"""
from __future__ import annotations

import importlib
import os
import site
import sys
from pathlib import Path


def make_importable(folder) -> None:
    """Put ``folder`` first on ``sys.path`` (it stays there, as in DAMNIT's runner, for
    imports inside variables) and forget the modules already imported from it, or from
    another folder under a name that ``folder`` provides (another context's neighbour),
    so that the next import reads ``folder``'s files as they are now. Installed packages,
    the standard library and ``damnit_ctx`` are never forgotten."""
    folder = os.path.realpath(folder)
    provided = _module_names(folder)
    for name in [n for n, m in list(sys.modules.items()) if _stale(n, m, folder, provided)]:
        del sys.modules[name]
    while folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    importlib.invalidate_caches()  # a file created since the last import is found


#: Modules never imported afresh: those the context file's classes come from.
_OURS = {__name__.partition(".")[0], "damnit_ctx"}


def _stale(name: str, module, folder: str, provided: set[str]) -> bool:
    """Whether module ``name`` must be imported again for a context file in ``folder``."""
    file = getattr(module, "__file__", None)
    top = name.partition(".")[0]
    if not file or top in _OURS:
        return False
    if top in provided and not file.startswith(_installed_prefixes()):
        return True
    path = Path(file)
    depth = name.count(".") + (path.stem == "__init__")
    if depth >= len(path.parents) or not file.startswith(folder):
        return False
    return os.path.realpath(path.parents[depth]) == folder


def _installed_prefixes() -> tuple[str, ...]:
    """Where installed packages and the standard library live."""
    return tuple({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  site.getusersitepackages()})


def _module_names(folder: str) -> set[str]:
    """Top-level module names the files and packages in ``folder`` provide, standard
    library and built-in ones excluded."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return set()
    names = {e[:-3] for e in entries if e.endswith(".py")}
    names |= {e for e in entries if e.isidentifier() and os.path.isdir(os.path.join(folder, e))}
    return names - set(sys.stdlib_module_names) - set(sys.builtin_module_names)
