"""Whether a variable's function reads its run: when none of the variables to compute
does (``reprocess --stale`` of a variable computed from stored inputs only), the run is
not opened at all.

The answer is read from the function's bytecode and errs towards "reads": the first
parameter counts as read if any instruction loads or deletes it, an inner function or
comprehension captures it, or the function could reach its own frame (``locals``,
``vars``, ``eval``, ``exec``, ``sys._getframe``, ``inspect``). A function without its own
code object (a C function, a callable object) or without parameters (a decorator's
``*args`` wrapper) reads it.
"""
from __future__ import annotations

import dis

#: Names through which a function could reach its local variables without loading them.
_FRAME_ACCESS = frozenset({"locals", "vars", "eval", "exec", "_getframe", "currentframe",
                           "inspect", "stack"})


def reads_run(func) -> bool:
    """Whether ``func`` may read its first positional parameter (the run)."""
    code = getattr(func, "__code__", None)
    if code is None or code.co_argcount == 0:
        return True
    name = code.co_varnames[0]
    if name in code.co_cellvars or _FRAME_ACCESS & set(code.co_names):
        return True
    return any(ins.argval == name and ins.opname.startswith(("LOAD_", "DELETE_"))
               for ins in dis.get_instructions(code))
