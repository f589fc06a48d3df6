"""Reprocessing N mock runs with the 25-variable context: our backfill vs the floor.

* floor: a plain in-process loop over the runs: the context loaded once, then per run
  ``context_loader.runner.execute`` (open once, evaluate, write the fragment) and
  ``store_fragment`` (one locked HDF5 write + one SQLite transaction). No Dagster.
* backfill run: what our single-run backfill executes: one Dagster run of the ``all`` job
  over the partition range, in process, on a SQLite instance in a temporary DAGSTER_HOME
  (events, checks, provenance included).
* backfill end to end (``--daemon``): ``reprocess()`` with a real ``dagster-daemon``:
  adding the backfill, the daemon's pick-up and run launch (a new process loading the
  code location), the run, and following it to the end.

The floor and the backfill run alternate (A B A B ...) and the table gives medians and
their ratio. Usage: ``python benchmarks/reprocess_floor.py [--runs 20] [--repeat 2] [--daemon]``
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
REPO = Path(__file__).resolve().parent.parent
CONTEXT = REPO / "benchmarks" / "contexts" / "context_25vars.py"
PROPOSAL = 1234


def floor(folder: Path, runs: list[int]) -> float:
    from context_loader import runner
    from context_loader.contextfile import ContextFile
    from damnit_dagster.storage.writer import store_fragment

    t0 = time.perf_counter()
    ctx = ContextFile.from_path(folder / "context.py")
    for run in runs:
        fragment = folder / "extracted_data" / f"floor_r{run}.h5"
        runner.execute(ctx, PROPOSAL, run, "all", fragment_path=str(fragment))
        store_fragment(folder, PROPOSAL, run, fragment)
    return time.perf_counter() - t0


def backfill_run(folder: Path, runs: list[int], home: Path) -> float:
    import dagster as dg
    from damnit_dagster.definitions import build_definitions
    from damnit_dagster.partitions import add_runs

    with dg.DagsterInstance.from_config(str(home)) as instance:
        add_runs(instance, PROPOSAL, runs)
        t0 = time.perf_counter()
        defs = build_definitions(folder, with_sensor=False)
        result = defs.resolve_job_def("all").execute_in_process(
            instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": str(runs[0]),
                  "dagster/asset_partition_range_end": str(runs[-1])},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        elapsed = time.perf_counter() - t0
    assert result.success, "the backfill run failed"
    return elapsed


def backfill_daemon(folder: Path, runs: list[int], home: Path) -> float:
    import dagster as dg
    from damnit_dagster.backfill import reprocess

    env = {**os.environ, "DAGSTER_HOME": str(home), "DAMNIT_DIR": str(folder)}
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
         str(REPO / "workspace.yaml")], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(8)   # let the daemon start; its start-up is not part of a reprocess
        with dg.DagsterInstance.from_config(str(home)) as instance:
            t0 = time.perf_counter()
            reprocess(folder, runs, instance=instance, timeout=1800)
            return time.perf_counter() - t0
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--daemon", action="store_true", help="also time reprocess() end to end")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from damnit_dagster.mockdata import make_proposal
    from damnit_dagster.storage.layout import init_damnit_dir

    tmp = Path(tempfile.mkdtemp(prefix="damnit-bench-"))
    runs = list(range(1, args.runs + 1))
    try:
        data = tmp / "data"
        t = time.perf_counter()
        make_proposal(data, PROPOSAL, runs)
        print(f"mock proposal: {len(runs)} runs in {time.perf_counter() - t:.1f} s", flush=True)
        os.environ["EXTRA_DATA_DATA_ROOT"] = os.environ["XFEL_DATA_ROOT"] = str(data)
        home = tmp / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
        os.environ["DAGSTER_HOME"] = str(home)   # the code location's state folder too
        folders = {}
        for kind in ("floor", "dagster"):
            folders[kind] = init_damnit_dir(tmp / kind, PROPOSAL, context_source=CONTEXT).root
        floor(folders["floor"], runs[:1])              # warm-up: imports, first figure
        times = {"floor": [], "backfill run": []}
        for i in range(args.repeat):
            times["floor"].append(floor(folders["floor"], runs))
            times["backfill run"].append(backfill_run(folders["dagster"], runs, home))
            print(f"pass {i + 1}: floor {times['floor'][-1]:.1f} s, "
                  f"backfill run {times['backfill run'][-1]:.1f} s", flush=True)
        if args.daemon:
            times["backfill end to end"] = [backfill_daemon(folders["dagster"], runs, home)]
        base = statistics.median(times["floor"])
        print(f"\n{len(runs)} runs, 25-variable context, median of {args.repeat} "
              f"(end to end: 1 pass)\n")
        print("| how | total (s) | per run (s) | vs floor |")
        print("| --- | --- | --- | --- |")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"| {name} | {med:.1f} | {med / len(runs):.3f} | {med / base:.2f}x |")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
