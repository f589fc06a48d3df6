"""The in-process floor of ``compare_damnit.py``: one warm Python process loading the
context once and evaluating + storing run after run, with no Dagster.

Run as a script, it is the child process :func:`run_floor` measures."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _bench_util import CONTEXT, PROPOSAL, run_measured


def run_floor(work: Path, nruns: int, env: dict, data: str = "all"):
    """The floor in a child process: (its results, Measured of the process, the folder)."""
    from damnit_dagster.storage.folder import init_damnit_dir

    folder = init_damnit_dir(work / "amore", PROPOSAL, context_source=CONTEXT).root
    out = work / f"floor-{data}.json"
    measured = run_measured([[sys.executable, __file__, folder, nruns, data, out]],
                            cwd=work, env=env, log=work / "floor.log")
    return json.loads(out.read_text()), measured, folder


def floor_child(folder: str, nruns: str, data: str, out: str) -> None:
    """In the child: one warm-up run, then the timed loop (``reprocess_floor.floor`` for all
    variables, per-run times otherwise); the results to ``out``."""
    import warnings
    warnings.filterwarnings("ignore")
    from context_loader import runner
    from context_loader.contextfile import ContextFile
    from context_loader.heap import keep_freed_heap
    from damnit_dagster.storage.writer import store_fragment

    keep_freed_heap()   # as every evaluation process of ours
    folder, runs = Path(folder), list(range(1, int(nruns) + 1))

    def one(ctx, run):
        fragment = folder / "extracted_data" / f"floor_r{run}.h5"
        t = time.perf_counter()
        runner.execute(ctx, PROPOSAL, run, data, fragment_path=str(fragment))
        store_fragment(folder, PROPOSAL, run, fragment)
        return time.perf_counter() - t

    warm = ContextFile.from_path(folder / "context.py")
    one(warm, runs[0])                      # imports, first figure
    cpu0 = time.process_time()
    if data == "all":
        from reprocess_floor import floor
        result = {"source": "reprocess_floor.floor", "total": floor(folder, runs)}
    else:
        t0 = time.perf_counter()
        ctx = ContextFile.from_path(folder / "context.py")
        result = {"source": "own loop", "per_run": [one(ctx, run) for run in runs]}
        result["total"] = time.perf_counter() - t0
    result["cpu"] = time.process_time() - cpu0
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    floor_child(*sys.argv[1:])
