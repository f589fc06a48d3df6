"""Live processing through ``damnit-dagster listen``: event-to-result latency and bursts.

One backend (``listen``, the 25-variable context, a nafka broker on 127.0.0.1 named in
the folder's ``kafka_brokers``) serves a mock proposal whose runs are hard links of one
mock run. Measured, side by side in one pass:

* **latency**, one migration event at a time (the next once the previous one's Dagster run
  finished), from storing the event in the inbox as ``damnit-dagster event`` does, or from
  sending the Kafka message, to the moment the run's variables are committed rows of
  ``runs.sqlite``; with the backend otherwise idle, and while a ``reprocess`` of 200 other
  runs runs (started again whenever it ends, so every event meets one). The medians of the
  Dagster run's stages split it: run requested (sensor tick), launched (dequeued and
  forked), run started, step started;
* **a burst**: ``damnit-dagster event migration A-B`` with repeated events mixed in, until
  every run is stored, against ``damnit-dagster reprocess A-B`` of the same runs with the
  same backend; each run's partition must be materialised once by the burst.

DAMNIT 0.4.0 takes 5.5 to 6.7 s from a migration event to its raw variables (research
xfel-data.md §4).

Usage: ``python benchmarks/event_latency.py [--events 50] [--reprocess 200] [--burst 200]``
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _bench_util import BIN, CONTEXT, PROPOSAL, log, tree_sample  # noqa: E402
from _our_backend import listening, names_stored  # noqa: E402

#: DAMNIT 0.4.0, migration event -> raw variables in the DB (research xfel-data.md §4).
DAMNIT_040 = (5.5, 6.7)
STAGES = ("requested", "launched", "started", "step", "seen")


def percentile(values, q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, interpolated."""
    values = sorted(values)
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def mock_runs(data: Path, runs: int) -> None:
    """Runs 1..``runs`` of the mock proposal: run 1 written, the others hard links of it."""
    from damnit_dagster.ops.mockdata import make_proposal

    pdir = make_proposal(data, PROPOSAL, [1], runs_without_proc=[])
    for kind in ("raw", "proc"):
        for run in range(2, runs + 1):
            shutil.copytree(pdir / kind / "r0001", pdir / kind / f"r{run:04d}",
                            copy_function=os.link)


def stages(instance, run: int, t0: float) -> dict:
    """When the stages of the Dagster run of ``run`` happened, in s after ``t0``."""
    import dagster as dg

    while True:   # the next event starts from idle
        records = instance.get_run_records(dg.RunsFilter(tags={"damnit/run": str(run)}))
        if records and all(r.dagster_run.is_finished for r in records):
            break
        time.sleep(0.05)
    record = records[0]
    first = {}
    for entry in instance.all_logs(record.dagster_run.run_id):
        event = entry.dagster_event
        kind = event.event_type if event is not None else None
        name = {dg.DagsterEventType.RUN_STARTING: "launched",
                dg.DagsterEventType.RUN_START: "started",
                dg.DagsterEventType.STEP_START: "step"}.get(kind)
        if name:
            first.setdefault(name, entry.timestamp - t0)
    return {"requested": record.create_timestamp.timestamp() - t0, **first}


class Reprocessing:
    """Keeps a ``damnit-dagster reprocess`` of ``runs`` running (a new one when it ends)."""

    def __init__(self, folder: Path, runs: str, env: dict, logfile: Path):
        self.command = [str(BIN / "damnit-dagster"), "--dir", str(folder), "reprocess", runs]
        self.env, self.logfile, self.proc, self.started = env, logfile, None, 0

    def ensure(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            with open(self.logfile, "ab") as out:
                self.proc = subprocess.Popen(self.command, env=self.env, stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.started += 1
            time.sleep(3)   # its backfill's runs are under way before the next event

    def stop(self) -> None:
        """Ctrl-C, as a user would: the command cancels its backfill and waits for its
        runs to stop (a terminated command would leave the backfill running in the
        backend, next to the burst that follows)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(120)


def idle_cpu(pid: int, seconds: float = 30) -> float:
    """CPU of the backend's process tree while idle, in % of one core."""
    before = tree_sample(pid)[2]
    time.sleep(seconds)
    after = tree_sample(pid)[2]
    return 100 * sum(t - before.get(k, 0) for k, t in after.items()) / seconds


def latencies(folder, instance, send, runs, expected, reprocessing=None) -> list[dict]:
    """Send one event per run (one at a time); per event its stages (s)."""
    db = folder / "runs.sqlite"
    out = []
    for run in runs:
        if reprocessing is not None:
            reprocessing.ensure()
        t0 = time.time()
        send(run)
        deadline = time.monotonic() + 120
        while not expected <= names_stored(db, run):
            if time.monotonic() > deadline:
                raise TimeoutError(f"r{run}: no result after 120 s")
            time.sleep(0.01)
        seen = time.time() - t0
        out.append({**stages(instance, run, t0), "seen": seen})
        log(f"  r{run}: {seen:.2f} s")
        time.sleep(0.5)
    return out


def burst(folder, instance, env, first: int, n: int, logfile: Path) -> dict:
    """``event migration first-last`` plus repeats, then ``reprocess`` of the same runs."""
    import dagster as dg

    cli = str(BIN / "damnit-dagster")
    runs = list(range(first, first + n))
    repeats = [str(r) for r in runs[::5]]
    t0 = time.monotonic()
    with open(logfile, "ab") as out:
        subprocess.run([cli, "--dir", str(folder), "event", "migration",
                        f"{runs[0]}-{runs[-1]}"], env=env, stdout=out, stderr=out, check=True)
        subprocess.run([cli, "--dir", str(folder), "event", "migration", *repeats], env=env,
                       stdout=out, stderr=out, check=True)
    records = dg.AssetRecordsFilter(asset_key=dg.AssetKey([f"p{PROPOSAL}", "n_trains"]),
                                    asset_partitions=[str(r) for r in runs])
    while True:
        stored = [r.partition_key for r in instance.fetch_materializations(
            records, limit=10 * n).records]
        if len(set(stored)) == n:
            break
        time.sleep(0.2)
    took = time.monotonic() - t0
    dagster_runs = instance.get_runs(dg.RunsFilter(tags={"damnit/trigger": "migration"}))
    in_burst = [r for r in dagster_runs if int(r.tags.get("dagster/asset_partition_range_start")
                                               or r.tags.get("damnit/run")) in set(runs)]
    while not all(r.is_finished for r in instance.get_runs(
            dg.RunsFilter(run_ids=[r.run_id for r in in_burst]))):
        time.sleep(0.2)
    once = sorted(map(int, stored)) == runs
    t1 = time.monotonic()
    with open(logfile, "ab") as out:
        subprocess.run([cli, "--dir", str(folder), "reprocess", f"{runs[0]}-{runs[-1]}"],
                       env=env, stdout=out, stderr=out, check=True)
    return {"events": n + len(repeats), "runs": n, "burst_s": took, "dagster_runs":
            len(in_burst), "once": once, "reprocess_s": time.monotonic() - t1}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--reprocess", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200, help="0: no burst")
    parser.add_argument("--no-kafka", action="store_true")
    args = parser.parse_args()
    import dagster as dg
    from kafka import KafkaProducer

    from damnit_dagster.events.inbox import EventInbox
    from damnit_dagster.plugins.home import prepare_instance
    from damnit_dagster.storage.database import DamnitDB
    from support.kafka_broker import running_broker

    n, r = args.events, args.reprocess
    sources = ["inbox"] + ([] if args.no_kafka else ["kafka"])
    plan, next_run = [], 2                # run 1: warm-up
    for busy in (False, True):
        for source in sources:
            plan.append((source, busy, list(range(next_run, next_run + n))))
            next_run += n
    reprocess_runs = (next_run, next_run + r - 1)
    burst_first = next_run + r
    with tempfile.TemporaryDirectory(prefix="event-latency-") as tmp, \
            running_broker(Path(tmp)) as broker:
        work = Path(tmp)
        log(f"mock data: {burst_first + args.burst - 1} runs")
        mock_runs(work / "data", burst_first + args.burst - 1)
        home, folder = work / "home", work / "amore"
        env = {**os.environ, "DAGSTER_HOME": str(home), "MPLBACKEND": "Agg",
               "EXTRA_DATA_DATA_ROOT": str(work / "data"), "XFEL_DATA_ROOT": str(work / "data")}
        os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "EXTRA_DATA_DATA_ROOT",
                                               "XFEL_DATA_ROOT")})
        subprocess.run([str(BIN / "damnit-dagster"), "init", str(PROPOSAL), "--context",
                        str(CONTEXT), "--path", str(folder)], env=env, check=True,
                       capture_output=True)
        prepare_instance()
        with DamnitDB(folder / "runs.sqlite") as db:
            db.metameta["kafka_brokers"] = broker
        inbox = EventInbox(home / "damnit_events.sqlite")
        producer = KafkaProducer(bootstrap_servers=[broker])

        def by_kafka(run):
            producer.send("test.r2d2", json.dumps({"event": "migration_complete",
                                                   "proposal": PROPOSAL, "run": run}).encode())
            producer.flush()

        send = {"inbox": lambda run: inbox.add("migration", PROPOSAL, run, source="benchmark"),
                "kafka": by_kafka}
        table, loads = [], {}
        with listening(folder, home, env, work / "listen.log") as backend, \
                dg.DagsterInstance.from_config(str(home)) as instance:
            time.sleep(5)   # the Kafka bridge has its partitions
            idle = idle_cpu(backend.pid)
            log(f"idle backend: {idle:.1f} % of a core")
            send["inbox"](1)
            while not names_stored(folder / "runs.sqlite", 1):
                time.sleep(0.1)
            stages(instance, 1, time.time())
            expected = names_stored(folder / "runs.sqlite", 1)
            reprocessing = Reprocessing(folder, f"{reprocess_runs[0]}-{reprocess_runs[1]}",
                                        env, work / "reprocess.log")
            for source, busy, runs in plan:
                loads[(source, busy)] = os.getloadavg()
                log(f"{source}, reprocess running: {busy} ({loads[(source, busy)][0]:.2f})")
                table.append((source, busy, latencies(
                    folder, instance, send[source], runs, expected,
                    reprocessing if busy else None)))
            reprocessing.stop()
            time.sleep(5)
            burst_load, burst_result = os.getloadavg(), None
            if args.burst:
                log(f"burst of {args.burst} ({burst_load[0]:.2f})")
                burst_result = burst(folder, instance, env, burst_first, args.burst,
                                     work / "burst.log")
        producer.close()
    print_tables(table, loads, reprocessing.started, burst_result, burst_load, n, r)
    print(f"\nidle backend (listen and its processes, 30 s before the first event): "
          f"{idle:.1f} % of a core")


def print_tables(table, loads, reprocesses, burst_result, burst_load, n, r):
    print(f"\nEvent -> the run's variables committed in runs.sqlite, 25-variable context, "
          f"{n} events one at a time per row (seconds)\n")
    print(f"| source | {r}-run reprocess running | median | p95 | max | run requested | "
          "launched | run started | step started | load (1 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for source, busy, results in table:
        seen = [x["seen"] for x in results]
        med = {k: statistics.median(x[k] for x in results if k in x) for k in STAGES}
        print(f"| {source} | {'yes' if busy else 'no'} | **{statistics.median(seen):.2f}** | "
              f"{percentile(seen, 0.95):.2f} | {max(seen):.2f} | "
              + " | ".join(f"{med[k]:.2f}" for k in STAGES[:-1])
              + f" | {loads[(source, busy)][0]:.2f} |")
    print(f"| DAMNIT 0.4.0 | no | {DAMNIT_040[0]}-{DAMNIT_040[1]} | | | | | | | |")
    print(f"\n(reprocess of {r} runs started {reprocesses} times)\n")
    if burst_result is None:
        return
    b = burst_result
    print("| burst: events (with repeats) | runs | Dagster runs | all stored (s) | "
          "reprocess of the same runs (s) | burst / reprocess | each run once | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {b['events']} | {b['runs']} | {b['dagster_runs']} | {b['burst_s']:.1f} | "
          f"{b['reprocess_s']:.1f} | {b['burst_s'] / b['reprocess_s']:.2f}x | "
          f"{'yes' if b['once'] else 'NO'} | {burst_load[0]:.2f} |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
