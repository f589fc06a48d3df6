"""Write a context file of N cheap variables in a tree of ``var#`` dependencies: the
first reads the run's train count, each other one adds to its parent's value
(``v{i}`` depends on ``v{(i-1)//2}``). Bookkeeping, not science, dominates such a
context: what issue 19's "100 cheap variables" rows measure.

Usage: ``python benchmarks/cheap_context.py 100 > /tmp/cheap100.py``, then run a
benchmark with ``DAMNIT_BENCH_CONTEXT=/tmp/cheap100.py`` (``_bench_util.CONTEXT``), e.g.
``DAMNIT_BENCH_CONTEXT=/tmp/cheap100.py python benchmarks/compare_damnit.py --runs 50
--events 0 --workdir /tmp/damnit-bench-cheap``.
"""
from __future__ import annotations

import sys


def cheap_context(n: int) -> str:
    """The context file's text."""
    lines = ["from damnit_ctx import Variable", "", "",
             '@Variable(title="v0")',
             "def v0(run):",
             "    return len(run.train_ids)"]
    for i in range(1, n):
        parent = (i - 1) // 2
        lines += ["", "", f'@Variable(title="v{i}")',
                  f'def v{i}(run, x: "var#v{parent}"):',
                  f"    return x + {i}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(cheap_context(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
