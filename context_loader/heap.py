"""Keep freed heap memory in an evaluation process for its next allocations.

Scientific code allocates and frees large temporaries (an array per step) over and over.
By default glibc serves each of them with a fresh memory mapping, or returns freed memory
at the heap's top to the kernel at once, so each new temporary is faulted in page by page:
for numpy-heavy variables a large part of the run's time, spent in the kernel. A process
that has already grown (a long-lived warm one) pays less, so the same variable was much
slower in a fresh Slurm task or a forked child than in an interpreter that had run for a
while. :func:`keep_freed_heap` asks glibc to serve allocations below
:data:`HEAP_ALLOCATIONS_BELOW` from the heap and to keep up to :data:`KEPT_HEAP` of freed
memory for reuse. It works in a child forked from a thread as well (whose allocations
come from that thread's arena, not the main heap).
"""
from __future__ import annotations

import ctypes

#: Allocations smaller than this come from the heap instead of their own mapping (glibc's
#: largest ``M_MMAP_THRESHOLD``).
HEAP_ALLOCATIONS_BELOW = 8 << 20
#: Freed memory at the top of a heap kept for reuse instead of given back.
KEPT_HEAP = 16 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # mallopt's parameters in glibc's malloc.h


def keep_freed_heap() -> bool:
    """Make this process reuse freed memory for its large temporaries (call it in a
    process that evaluates runs, not in a library). False when the C library is not
    glibc (nothing changed)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_ALLOCATIONS_BELOW)
                and mallopt(_M_TRIM_THRESHOLD, KEPT_HEAP))
