"""``reprocess --slurm`` against ``reprocess`` on this host, on the project's loopback
Slurm (``scripts/start_slurm.sh``), for a CPU-bound context.

The context has one variable doing a fixed amount of single-threaded numpy work per run
(calibrated here to about ``--seconds`` on this machine). Rows, in one run:

* floor: the in-process floor, ``context_loader.runner.execute`` of runs with the context
  loaded once, in one process per slot at the same time (cores share caches and memory
  bandwidth), measured just before and after each pass (this machine's speed drifts);
  per-run time x runs / slots is the ideal of any parallel execution with that many slots;
* Slurm start-up: an array of ``slots`` tasks doing nothing, from ``sbatch`` until the
  last task has ended (what one array adds at least);
* ``reprocess --local``: the runs on this host (no backend: the command runs them);
* ``reprocess --slurm``: one job array with ``concurrent_jobs`` = slots and
  ``noncluster_cpus`` 1, by default the runs dealt into one task per slot, and with
  ``slurm_runs_per_task 1`` (a task per run, as DAMNIT 0.4.0 submits them);
* the single writer: the host's time per run stored from the cluster (the step logs it),
  as runs per second the backend host can absorb, for this one-variable context and for
  the 25-variable context of the other benchmarks (its own ``reprocess --slurm``).

DAMNIT 0.4.0's own ``reprocess`` array is not run: it passes ``--clusters solaris``,
which needs a Slurm with accounting (slurmdbd) that the loopback Slurm does not have.

Usage: ``python benchmarks/slurm_reprocess.py [--runs 20] [--slots 2] [--seconds 1]``
(root, as the loopback Slurm needs it).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "benchmarks")]

from _bench_util import BIN, log, wait_for  # noqa: E402

PROPOSAL = 2468
#: One variable of single-threaded numpy work: ``LOOPS`` sorts of a shuffled array.
CONTEXT = """
import numpy as np
from damnit_ctx import Variable

LOOPS = {loops}

@Variable(title="Work")
def work(run):
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(LOOPS):
        total += float(np.sort(rng.random(200_000))[100])
    return total
"""


def work_seconds(loops: int) -> float:
    """Seconds the context's variable takes here for ``loops``."""
    import numpy as np

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(loops):
        float(np.sort(rng.random(200_000))[100])
    return time.perf_counter() - t0


def floor_per_run(folder: Path, runs: list[int]) -> float:
    """The in-process floor's seconds per run: ``context_loader.runner.execute`` of
    ``runs`` with the context loaded once (opening the run, the variable, the fragment),
    as a task evaluates them."""
    from context_loader import runner
    from context_loader.contextfile import ContextFile
    from context_loader.heap import keep_freed_heap

    keep_freed_heap()   # as every evaluation process of ours
    ctx = ContextFile.from_path(folder / "context.py")
    fragment = folder / "extracted_data" / f"floor-{os.getpid()}.h5"
    t0 = time.perf_counter()
    for run in runs:
        runner.execute(ctx, PROPOSAL, run, "all", fragment_path=str(fragment))
    fragment.unlink()
    return (time.perf_counter() - t0) / len(runs)


def calibrate(seconds: float) -> int:
    """Loops of the variable taking about ``seconds``."""
    per_loop = work_seconds(20) / 20
    return max(1, round(seconds / per_loop))


def slurm_startup(slots: int) -> float:
    """Seconds from ``sbatch`` of ``slots`` empty array tasks to the last one ended."""
    t0 = time.perf_counter()
    job = subprocess.run(["sbatch", "--parsable", "--array", f"0-{slots - 1}",
                          "--cpus-per-task", "1", "--mem", "100M", "-o", "/dev/null",
                          "--wrap", "true"], capture_output=True, text=True,
                         check=True).stdout.strip()

    def ended():
        out = subprocess.run(["scontrol", "show", "job", job, "-o"], capture_output=True,
                             text=True).stdout
        states = re.findall(r"JobState=(\S+)", out)
        return states and all(s == "COMPLETED" for s in states) and \
            len(states) == slots
    wait_for(ended, 60, "empty array", interval=0.05)
    return time.perf_counter() - t0


def reprocess(folder: Path, env: dict, *args) -> tuple[float, str]:
    """Wall seconds of ``damnit-dagster reprocess ARGS all`` (every run processed), its
    output."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "damnit-dagster"), "--dir", str(folder), "reprocess",
                           *args, "all"], cwd=folder, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:   # a run not processed
        raise SystemExit(f"reprocess {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return elapsed, proc.stdout


def writer_rate(home: Path) -> tuple[float, int]:
    """(host seconds per stored run, runs) from the last Slurm step's log line."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        for entry in instance.all_logs(run.run_id):
            m = re.search(r"Stored (\d+) runs from Slurm in ([\d.]+) s", entry.user_message)
            if m:
                return float(m[2]) / int(m[1]), int(m[1])
    raise SystemExit("no 'Stored ... runs from Slurm' line in the Dagster run's log")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()

    from damnit_dagster.ops.mockdata import make_proposal
    from support.folders import make_damnit_folder

    subprocess.run([str(REPO / "scripts" / "start_slurm.sh")], check=True)
    work = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    data = work / "data"
    make_proposal(data, PROPOSAL, range(1, args.runs + 1), ntrains=5, runs_without_proc=())
    loops = calibrate(args.seconds)
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    env = {**os.environ, "EXTRA_DATA_DATA_ROOT": str(data), "XFEL_DATA_ROOT": str(data),
           "DAGSTER_HOME": str(home), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    os.environ.update({k: env[k] for k in ("EXTRA_DATA_DATA_ROOT", "XFEL_DATA_ROOT",
                                           "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    folder = make_damnit_folder(work / "amore", CONTEXT.format(loops=loops),
                                proposal=PROPOSAL, concurrent_jobs=str(args.slots),
                                noncluster_cpus="1", noncluster_mem="2G").root

    log("Slurm start-up: an empty array")
    startup = min(slurm_startup(args.slots) for _ in range(3))

    def busy_floor(runs):
        """The floor's per-run time with every slot busy: one floor per slot at once
        (cores share caches and memory bandwidth, as the tasks do)."""
        with ProcessPoolExecutor(args.slots, mp_context=get_context("fork")) as pool:
            times = list(pool.map(floor_per_run, [folder] * args.slots,
                                  [runs] * args.slots))
        return sum(times) / len(times)

    def timed_pass(*flags):
        """(wall time, the floor's per-run time around it): this machine's speed
        drifts, so each pass gets its own floor, measured just before and after."""
        before = busy_floor([1, 2, 3])
        wall, _ = reprocess(folder, env, *flags)
        return wall, (before + busy_floor([4, 5, 6])) / 2

    log("reprocess --local")
    local, floor_local = timed_pass("--local")
    log("reprocess --slurm (runs dealt over the slots)")
    slurm, floor_slurm = timed_pass("--slurm")
    writer, stored = writer_rate(home)
    subprocess.run([str(BIN / "damnit-dagster"), "--dir", str(folder), "db-config",
                    "slurm_runs_per_task", "1"], env=env, check=True, capture_output=True)
    log("reprocess --slurm, a task per run")
    per_task, floor_task = timed_pass("--slurm")

    log("reprocess --slurm of the 25-variable context")
    from _bench_util import CONTEXT as CONTEXT_25

    folder_25 = make_damnit_folder(work / "amore25", CONTEXT_25, proposal=PROPOSAL,
                                   concurrent_jobs=str(args.slots), noncluster_cpus="1",
                                   noncluster_mem="2G").root
    reprocess(folder_25, env, "--slurm")
    writer_25, stored_25 = writer_rate(home)

    def ideal(per_run):
        return args.runs * per_run / args.slots + startup

    load = os.getloadavg()[0]
    print(f"\n{args.runs} runs of one-core numpy each, {args.slots} slots "
          f"({os.cpu_count()} cores), load after: {load:.2f}; Slurm start-up ({args.slots} "
          f"empty array tasks): {startup:.2f} s. Ideal: runs x the in-process floor's "
          f"per-run time (one floor per slot at once, measured around each pass) / slots "
          f"+ start-up.\n")
    print("| what | wall time | floor per run | ideal | vs ideal |")
    print("| --- | --- | --- | --- | --- |")
    for what, wall, floor in (
            ("`reprocess --local` (this host)", local, floor_local),
            ("`reprocess --slurm` (a task per slot)", slurm, floor_slurm),
            ("`reprocess --slurm`, `slurm_runs_per_task 1`", per_task, floor_task)):
        print(f"| {what} | {wall:.1f} s | {floor:.2f} s | {ideal(floor):.1f} s | "
              f"{wall / ideal(floor):.2f}x |")
    print("\n| single writer | host time per stored run | runs/s |")
    print("| --- | --- | --- |")
    print(f"| 1 variable ({stored} runs) | {writer * 1000:.0f} ms | {1 / writer:.0f} |")
    print(f"| 25 variables ({stored_25} runs) | {writer_25 * 1000:.0f} ms | "
          f"{1 / writer_25:.0f} |")


if __name__ == "__main__":
    main()
