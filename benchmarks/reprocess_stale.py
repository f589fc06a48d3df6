"""``reprocess --stale all`` vs ``reprocess all`` after editing one leaf variable.

N mock runs are processed once with the 25-variable context; then, in each pass, the body
of one leaf variable (``xgm_std``, nothing depends on it) is edited and the two are timed
side by side in this process, without a backend, as the command does them with no
backend (evaluations forked from an evaluation server started before Dagster is
imported): ``reprocess_stale`` (per run only ``xgm_std``; its input ``xgm_intensity`` read
from the run's file) and ``reprocess_direct`` (every variable). Each pass edits the
variable again, so the stale pass always has it to recompute; the stale pass runs first
(the full pass would make nothing stale). Wall time, median over the passes, and the
ratio (CPU time is not shown: the evaluations are the server's children, not ours).

Usage: ``python benchmarks/reprocess_stale.py [--runs 100] [--repeat 2]``
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("MPLBACKEND", "Agg")

from _bench_util import CONTEXT, REPO, load_note, log  # noqa: E402
from reprocess_floor import output_to  # noqa: E402

PROPOSAL = 1234
LEAF = "    return float(xgm.std())"


def edit_leaf(folder: Path, k: int) -> None:
    """A new body for ``xgm_std`` (same value, different code)."""
    path = folder / "context.py"
    text = path.read_text()
    start = text.index("def xgm_std(")
    end = text.index("\n\n", start)
    body = f'def xgm_std(run, xgm: "var#xgm_intensity"):\n{LEAF} + 0 * {k}'
    path.write_text(text[:start] + body + text[end:])


def timed(work) -> tuple[float, dict]:
    t0 = time.perf_counter()
    results = work()
    return time.perf_counter() - t0, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from damnit_dagster.execution.fork_server import EvaluationServer
    from damnit_dagster.ops.mockdata import make_proposal
    from damnit_dagster.storage.folder import init_damnit_dir

    tmp = Path(tempfile.mkdtemp(prefix="damnit-stale-bench-"))
    runs = list(range(1, args.runs + 1))
    try:
        make_proposal(tmp / "data", PROPOSAL, runs)
        os.environ["EXTRA_DATA_DATA_ROOT"] = os.environ["XFEL_DATA_ROOT"] = str(tmp / "data")
        home = tmp / "dagster_home"
        home.mkdir()
        shutil.copyfile(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
        folder = init_damnit_dir(tmp / "amore", PROPOSAL, context_source=CONTEXT).root
        server = EvaluationServer(folder, folder / "context.py")   # before Dagster, as the CLI
        import dagster as dg

        from damnit_dagster.reprocess.direct import reprocess_direct
        from damnit_dagster.reprocess.stale import reprocess_stale

        times = {"reprocess --stale all": [], "reprocess all": []}
        loads = []
        with (server, dg.DagsterInstance.get() as instance,
              output_to(tmp / "user-output.log")):
            log(f"first processing of {len(runs)} runs")
            first = reprocess_direct(folder, runs, instance=instance, server=server)
            errors = {r: v.run_error for r, v in first.items() if not v.processed}
            assert not errors, f"first processing: {errors}"
            for k in range(args.repeat):
                loads.append(load_note())
                edit_leaf(folder, k + 1)
                said: list[str] = []
                wall, results = timed(functools.partial(
                    reprocess_stale, folder, runs, instance=instance, server=server,
                    say=said.append))
                assert sorted(results) == runs and all(
                    r.ok == ["xgm_std"] for r in results.values()), f"stale pass: {said}"
                times["reprocess --stale all"].append(wall)
                wall, results = timed(functools.partial(
                    reprocess_direct, folder, runs, instance=instance, server=server))
                assert sorted(results) == runs, "full pass: runs missing"
                times["reprocess all"].append(wall)
                log(f"pass {k + 1}: " + ", ".join(f"{n} {v[-1]:.1f} s"
                                                  for n, v in times.items()))
        full = statistics.median(times["reprocess all"])
        print(f"\n{len(runs)} runs, 25-variable context, leaf `xgm_std` edited; median of "
              f"{args.repeat} passes, no backend; before each pass: {'; '.join(loads)}\n")
        print("| pass | wall (s) | wall per run (s) | vs reprocess all |")
        print("| --- | --- | --- | --- |")
        for name, values in times.items():
            wall = statistics.median(values)
            print(f"| {name} | {wall:.1f} | {wall / len(runs):.3f} | {wall / full:.0%} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
