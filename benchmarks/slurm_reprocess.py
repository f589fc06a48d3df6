"""``reprocess --slurm`` against ``reprocess`` on this host, on the project's loopback
Slurm (``scripts/start_slurm.sh``), for a CPU-bound context.

The context has one variable doing a fixed amount of single-threaded numpy work per run
(calibrated here to about ``--seconds`` on this machine). Rows, in one run:

* floor: that work for every run, one after the other, in this process; per-run time
  x runs / slots is the ideal of any parallel execution with that many slots;
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
    folder = make_damnit_folder(work / "amore", CONTEXT.format(loops=loops),
                                proposal=PROPOSAL, concurrent_jobs=str(args.slots),
                                noncluster_cpus="1", noncluster_mem="2G").root

    log(f"floor: {args.runs} x the variable ({loops} loops)")
    per_run = work_seconds(loops * args.runs) / args.runs
    log("Slurm start-up: an empty array")
    startup = min(slurm_startup(args.slots) for _ in range(3))
    log("reprocess --local")
    local, _ = reprocess(folder, env, "--local")
    log("reprocess --slurm (runs dealt over the slots)")
    slurm, _ = reprocess(folder, env, "--slurm")
    writer, stored = writer_rate(home)
    subprocess.run([str(BIN / "damnit-dagster"), "--dir", str(folder), "db-config",
                    "slurm_runs_per_task", "1"], env=env, check=True, capture_output=True)
    log("reprocess --slurm, a task per run")
    per_task, _ = reprocess(folder, env, "--slurm")

    log("reprocess --slurm of the 25-variable context")
    from _bench_util import CONTEXT as CONTEXT_25

    folder_25 = make_damnit_folder(work / "amore25", CONTEXT_25, proposal=PROPOSAL,
                                   concurrent_jobs=str(args.slots), noncluster_cpus="1",
                                   noncluster_mem="2G").root
    reprocess(folder_25, env, "--slurm")
    writer_25, stored_25 = writer_rate(home)

    ideal = args.runs * per_run / args.slots + startup
    load = os.getloadavg()[0]
    print(f"\n{args.runs} runs x {per_run:.2f} s of one-core numpy each, {args.slots} slots "
          f"({os.cpu_count()} cores), load before: {load:.2f}\n")
    print("| what | wall time | vs ideal |")
    print("| --- | --- | --- |")
    print(f"| floor: one run, in process | {per_run:.2f} s | - |")
    print(f"| Slurm start-up: {args.slots} empty array tasks | {startup:.2f} s | - |")
    print(f"| ideal: runs x per-run / slots + start-up | {ideal:.1f} s | 1.00x |")
    print(f"| `reprocess --local` (this host) | {local:.1f} s | {local / ideal:.2f}x |")
    print(f"| `reprocess --slurm` (a task per slot) | {slurm:.1f} s | {slurm / ideal:.2f}x |")
    print(f"| `reprocess --slurm`, `slurm_runs_per_task 1` | {per_task:.1f} s | "
          f"{per_task / ideal:.2f}x |")
    print(f"| single writer: host time per stored run, 1 variable ({stored} runs) | "
          f"{writer * 1000:.0f} ms | {1 / writer:.0f} runs/s |")
    print(f"| single writer: host time per stored run, 25 variables ({stored_25} runs) | "
          f"{writer_25 * 1000:.0f} ms | {1 / writer_25:.0f} runs/s |")


if __name__ == "__main__":
    main()
