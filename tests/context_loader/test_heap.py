"""An evaluation process reuses freed memory for its large temporaries."""
import subprocess
import sys

#: A fresh interpreter forks a child from a thread (as evaluations are forked); the child
#: counts its minor page faults over 50 rounds of 2 MB temporaries.
PROBE = """
import os, resource, sys, threading
import numpy as np
from context_loader.heap import keep_freed_heap

def child():
    pid = os.fork()
    if pid == 0:
        if sys.argv[1] == "tuned":
            assert keep_freed_heap()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(50):
            np.sort(np.ones(250_000))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)

thread = threading.Thread(target=child)
thread.start()
thread.join()
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                         text=True, check=True).stdout
    return int(out)


def test_large_temporaries_are_not_faulted_in_again():
    untuned, tuned = _faults("untuned"), _faults("tuned")
    # untuned, each round faults its two 2 MB arrays in afresh (about 1,000 pages)
    assert untuned > 20_000
    assert tuned < untuned / 5
