"""Reprocessing N mock runs with the 25-variable context: our backfill vs the floor.

* floor: a plain in-process loop over the runs: the context loaded once, then per run
  ``context_loader.runner.execute`` (open once, evaluate, write the fragment) and
  ``store_fragment`` (one locked HDF5 write + one SQLite transaction); what the user's
  code prints goes to a log file, as in a step. No Dagster.
* backfill run: what our single-run backfill executes: one Dagster run of the ``all`` job
  over the partition range, in process, on a SQLite instance configured by the project's
  ``dagster_home/dagster.yaml`` (events, checks, provenance included).
* reprocess() end to end: with a real daemon (``python -m damnit_dagster.plugins.daemon``, the
  project's entry point): adding the backfill, the daemon's pick-up and run launch, the
  run, and following it to the end. Split into its stages from the run's record.

The floor and the backfill run alternate (A B A B ...); the table gives medians and
their ratios, in wall time and in CPU time (this process and its children): on a shared
machine the CPU ratio is the steadier one. The end-to-end row is one pass.

Usage: ``python benchmarks/reprocess_floor.py [--runs 20] [--repeat 2] [--no-daemon]
[--backfill-loop S]``; ``--backfill-loop`` tries a daemon setting not (yet) in the project:
Dagster's backfill loop every S seconds instead of 30.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml

os.environ.setdefault("MPLBACKEND", "Agg")
REPO = Path(__file__).resolve().parent.parent
CONTEXT = REPO / "damnit_dagster" / "templates" / "context_25vars.py"
PROPOSAL = 1234
#: Starts the project's daemon with Dagster's backfill loop shortened to argv[1] seconds.
DAEMON_WITH_LOOP = """
import sys
import dagster._daemon.controller as controller
from damnit_dagster.plugins.daemon import main
controller.DEFAULT_DAEMON_INTERVAL_SECONDS = float(sys.argv.pop(1))
sys.exit(main())
"""


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def output_to(path: Path):
    """Prints and log records of the user's code into ``path`` meanwhile."""
    with open(path, "a") as log_file:
        handler = logging.StreamHandler(log_file)
        logging.getLogger().addHandler(handler)
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                yield
        finally:
            logging.getLogger().removeHandler(handler)


def floor(folder: Path, runs: list[int]) -> float:
    from context_loader import runner
    from context_loader.contextfile import ContextFile
    from context_loader.heap import keep_freed_heap
    from damnit_dagster.storage.writer import store_fragment

    keep_freed_heap()   # as every evaluation process of ours
    t0 = time.perf_counter()
    with output_to(folder / "floor.log"):
        ctx = ContextFile.from_path(folder / "context.py")
        for run in runs:
            fragment = folder / "extracted_data" / f"floor_r{run}.h5"
            runner.execute(ctx, PROPOSAL, run, "all", fragment_path=str(fragment))
            store_fragment(folder, PROPOSAL, run, fragment)
    return time.perf_counter() - t0


def backfill_run(folder: Path, runs: list[int], home: Path) -> float:
    import dagster as dg

    from damnit_dagster.defs.definitions import build_definitions
    from damnit_dagster.defs.partitions import add_runs

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


def backfill_daemon(folder: Path, runs: list[int], home: Path, backfill_loop: float | None,
                    log: Path) -> tuple[float, dict[str, float]]:
    """``reprocess()`` through a real daemon: total seconds and the stages."""
    import dagster as dg

    from damnit_dagster.reprocess.backfill import reprocess

    env = {**os.environ, "DAGSTER_HOME": str(home), "DAMNIT_DIR": str(folder)}
    workspace = ["run", "-w", str(REPO / "workspace.yaml")]
    if backfill_loop:
        cmd = [sys.executable, "-c", DAEMON_WITH_LOOP, str(backfill_loop), *workspace]
    else:
        cmd = [sys.executable, "-m", "damnit_dagster.plugins.daemon", *workspace]
    with open(log, "ab") as log_file:
        daemon = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.time() + 120   # the daemon's start-up is not part of a reprocess
            while not instance.get_daemon_heartbeats().get("BACKFILL"):
                if time.time() > deadline or daemon.poll() is not None:
                    raise RuntimeError(f"the daemon did not start; see {log}")
                time.sleep(0.5)
            before = {r.run_id for r in instance.get_runs()}
            t0 = time.time()
            reprocess(folder, runs, instance=instance, timeout=3600, poll=0.5)
            total = time.time() - t0
            record = next(r for r in instance.get_run_records()
                          if r.dagster_run.run_id not in before)
            created = record.create_timestamp.timestamp()
            stages = {"daemon pick-up": created - t0,
                      "run start": record.start_time - created,
                      "run": record.end_time - record.start_time,
                      "results": t0 + total - record.end_time}
            return total, stages
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-daemon", action="store_true", help="skip the end-to-end pass")
    parser.add_argument("--backfill-loop", type=float, metavar="S",
                        help="run Dagster's backfill daemon loop every S s (default: its 30 s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from damnit_dagster.ops.mockdata import make_proposal
    from damnit_dagster.storage.folder import init_damnit_dir

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
        shutil.copyfile(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)   # the code location's state folder too
        folders = {kind: init_damnit_dir(tmp / kind, PROPOSAL, context_source=CONTEXT).root
                   for kind in ("floor", "dagster")}
        with output_to(tmp / "warm-up.log"):   # imports, first figure, first instance
            floor(folders["floor"], runs[:1])
            backfill_run(folders["dagster"], runs[:1], home)
        times = {"floor": [], "backfill run (in process)": []}
        for i in range(args.repeat):
            for name, measure in (("floor", lambda: floor(folders["floor"], runs)),
                                  ("backfill run (in process)",
                                   lambda: backfill_run(folders["dagster"], runs, home))):
                c0 = cpu_seconds()
                with output_to(tmp / "dagster.log"):
                    wall = measure()
                times[name].append((wall, cpu_seconds() - c0))
            print(f"pass {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f} s" for k, v in times.items()),
                  flush=True)
        stages = {}
        if not args.no_daemon:
            label = "reprocess() end to end"
            c0 = cpu_seconds()
            total, stages = backfill_daemon(folders["dagster"], runs, home, args.backfill_loop,
                                            tmp / "daemon.log")
            times[label] = [(total, cpu_seconds() - c0)]
        wall0 = statistics.median(w for w, _ in times["floor"])
        cpu0 = statistics.median(c for _, c in times["floor"])
        launcher = (yaml.safe_load((home / "dagster.yaml").read_text()).get("run_launcher")
                    or {"class": "DefaultRunLauncher"})["class"]
        settings = [f"backfill loop {args.backfill_loop:g} s" if args.backfill_loop else
                    "the project daemon's 2 s backfill loop", launcher]
        print(f"\n{len(runs)} runs, 25-variable context, median of {args.repeat} "
              f"(end to end: 1 pass; {', '.join(settings)}); load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
        print("| how | wall (s) | wall per run (s) | wall vs floor | CPU per run (s) "
              "| CPU vs floor |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, values in times.items():
            wall = statistics.median(w for w, _ in values)
            cpu = statistics.median(c for _, c in values)
            cpu_cells = (f"{cpu / len(runs):.3f} | {cpu / cpu0:.2f}x"
                         if name != "reprocess() end to end"
                         else "- | -")   # the daemon's own CPU is not counted here
            print(f"| {name} | {wall:.1f} | {wall / len(runs):.3f} | {wall / wall0:.2f}x "
                  f"| {cpu_cells} |")
        if stages:
            print("\nend to end: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
