"""Event-to-result latency of the backend: a migration event in, the raw variables of the
spec's example context (``xgm_intensity``, ``pulses``) in ``runs.sqlite`` out.

A real ``dagster-daemon`` (tests/support/backend.py) serves a DAMNIT folder over mock
runs. Events are sent one at a time (the next after the previous one's result landed and
its Dagster run finished); each latency is from storing the event in the inbox to the
moment both values are rows of ``run_variables``. The Dagster run's timestamps split it
into: run requested (sensor tick), launched (dequeued, RUN_STARTING), worker up (the run
worker's "Started process for run"), run started (RUN_START), run finished, and the
values seen in ``runs.sqlite``. Each configuration named with
``--config`` gets its own fresh backend; the table compares medians with DAMNIT 0.4.0's
5.5 to 6.7 s (research xfel-data.md §4).

Usage: ``python benchmarks/event_latency.py [--events 20] [--config default fork ...]``
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.backend import running_backend  # noqa: E402

#: DAMNIT 0.4.0, migration event -> raw variables in the DB (research xfel-data.md §4).
DAMNIT_040 = (5.5, 6.7)
PROPOSAL = 3456
#: Moments measured from the event (medians in the table).
STAGES = ("requested", "launched", "worker", "started", "finished", "seen")
VARIABLES = {"xgm_intensity", "pulses"}

#: Instance settings compared (merged over dagster_home/dagster.yaml).
FORK = {"run_launcher": {"module": "damnit_dagster.plugins.launcher",
                         "class": "ForkServerRunLauncher"}}
CONFIGS = {   # name: (stock dagster-daemon?, instance config)
    "stock daemon, default launcher": (True, {}),
    "fast sensor loop, default launcher": (False, {}),
    "fast sensor loop, fork launcher": (False, FORK),
}


def stored(db: Path, run: int) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        names = {n for (n,) in conn.execute(
            "SELECT name FROM run_variables WHERE proposal=? AND run=? AND value IS NOT NULL",
            (PROPOSAL, run))}
    return VARIABLES <= names


def event_until_stored(backend, inbox, run: int, timeout: float,
                       poll: float = 0.02) -> tuple[float, float]:
    """Send the migration event of ``run`` and wait until its values are stored; return
    the (event, stored) Unix times. Raises ``TimeoutError`` with the daemon's log."""
    db = backend.damnit_dir / "runs.sqlite"
    t0 = time.time()
    inbox.add("migration", PROPOSAL, run, source="benchmark")
    deadline = time.monotonic() + timeout
    while not stored(db, run):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run}: no result after {timeout} s\n{backend.log()[-3000:]}")
        backend.check_alive()
        time.sleep(poll)
    return t0, time.time()


def one_event(backend, instance, inbox, run: int, timeout: float = 120) -> dict:
    """Send the migration event of ``run``; return its timings (seconds from the event)."""
    import dagster as dg

    t0, seen = event_until_stored(backend, inbox, run, timeout)
    seen -= t0
    while True:   # wait for the Dagster run to finish so the next event starts from idle
        runs = instance.get_run_records(dg.RunsFilter(tags={"damnit/run": str(run)}))
        if runs and all(r.dagster_run.is_finished for r in runs):
            break
        time.sleep(0.05)
    rec = runs[0]
    first = {}
    for entry in instance.all_logs(rec.dagster_run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.RUN_STARTING:
            first.setdefault("launched", entry.timestamp)
        elif (event.message or "").startswith("Started process for run"):
            first.setdefault("worker", entry.timestamp)
    return {"requested": rec.create_timestamp.timestamp() - t0,
            "launched": first.get("launched", t0) - t0, "worker": first.get("worker", t0) - t0,
            "started": (rec.start_time or 0) - t0, "finished": (rec.end_time or 0) - t0,
            "seen": seen}


def measure(name: str, stock: bool, config: dict, events: int, root: Path) -> list[dict]:
    from damnit_dagster.events.inbox import EventInbox
    from damnit_dagster.plugins.home import inbox_path
    from damnit_dagster.storage.folder import init_damnit_dir

    work = Path(tempfile.mkdtemp(prefix="latency-", dir=root))
    folder = work / "amore"
    init_damnit_dir(folder, PROPOSAL,
                    context_source=REPO / "damnit_dagster" / "templates" / "context_example.py")
    with running_backend(folder, work / "home", instance_config=config,
                         stock_daemon=stock) as backend:
        backend.wait_for_sensor()
        inbox = EventInbox(inbox_path())
        with backend.instance() as instance:
            one_event(backend, instance, inbox, events + 1)   # warm-up (first run worker)
            results = []
            for run in range(1, events + 1):
                results.append(one_event(backend, instance, inbox, run))
                print(f"  {name} r{run}: {results[-1]['seen']:.2f} s", file=sys.stderr)
                time.sleep(0.5)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--config", nargs="+", type=int, default=list(range(len(CONFIGS))),
                        help="which configurations, by index: " + "; ".join(
                            f"{i}: {n}" for i, n in enumerate(CONFIGS)))
    args = parser.parse_args()
    from damnit_dagster.ops.mockdata import make_proposal

    with tempfile.TemporaryDirectory(prefix="event-latency-") as tmp:
        root = Path(tmp)
        make_proposal(root / "data", PROPOSAL, range(1, args.events + 2), runs_without_proc=())
        os.environ["EXTRA_DATA_DATA_ROOT"] = os.environ["XFEL_DATA_ROOT"] = str(root / "data")
        names = [list(CONFIGS)[i] for i in args.config]
        table = {name: measure(name, *CONFIGS[name], args.events, root) for name in names}

    print(f"\nEvent -> raw variables of the spec's example context in runs.sqlite, "
          f"{args.events} events one at a time (seconds; medians, max of 'seen')\n")
    print("| config | run requested | launched | worker up | run started | run finished "
          "| **in runs.sqlite** | max | DAMNIT 0.4.0 / this |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, results in table.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        worst = max(r["seen"] for r in results)
        print(f"| {name} | " + " | ".join(f"{med[k]:.2f}" for k in STAGES[:-1])
              + f" | **{med['seen']:.2f}** | {worst:.2f} | {DAMNIT_040[0] / med['seen']:.1f}x to "
              f"{DAMNIT_040[1] / med['seen']:.1f}x |")


if __name__ == "__main__":
    main()
