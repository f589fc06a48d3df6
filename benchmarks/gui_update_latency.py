"""DAMNIT's GUI updates: how soon after a run's values are stored the GUI's message is on
the topic, and what a broker costs processing (none, a closed port, a live one).

A real ``dagster-daemon`` with the fork launcher (tests/support/backend.py) serves a folder
of the spec's example context whose ``gui_brokers`` is each configuration's; migration
events are sent one at a time. Per event: event -> values in
``runs.sqlite`` (polled every 2 ms), and with a live broker (nafka on 127.0.0.1) values
stored -> ``run_values_updated`` received by a consumer of ``test.damnit.db-{db_id}``.

Usage: ``python benchmarks/gui_update_latency.py [--events 20]``
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.backend import free_port, running_backend  # noqa: E402
from support.kafka_broker import running_broker  # noqa: E402

PROPOSAL = 3456
#: The raw variables of the spec's example context.
VARIABLES = {"xgm_intensity", "pulses"}
FORK = {"run_launcher": {"module": "damnit_dagster.plugins.launcher",
                         "class": "ForkServerRunLauncher"}}


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


class Received:
    """Arrival times of ``run_values_updated`` per run, from a consumer thread."""

    def __init__(self, broker: str, topic: str):
        from kafka import KafkaConsumer

        self.times: dict[int, float] = {}
        self.consumer = KafkaConsumer(topic, bootstrap_servers=[broker],
                                      auto_offset_reset="earliest")
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running:
            for records in self.consumer.poll(timeout_ms=50).values():
                now = time.time()
                for record in records:
                    msg = json.loads(record.value)
                    if msg["msg_kind"] == "run_values_updated":
                        self.times.setdefault(msg["data"]["run"], now)

    def close(self):
        self.running = False
        self.thread.join()
        self.consumer.close()


def one_event(backend, inbox, run: int, received: Received | None, timeout=120) -> dict:
    """Event -> values stored (s), and values stored -> message received (ms)."""
    t0, seen = event_until_stored(backend, inbox, run, timeout, poll=0.002)
    deadline = time.monotonic() + timeout
    result = {"seen": seen - t0}
    if received is not None:
        while run not in received.times:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run}: no run_values_updated after {timeout} s")
            time.sleep(0.002)
        result["message_ms"] = (received.times[run] - seen) * 1000
    return result


def measure(name: str, brokers: str, events: int, root: Path, live: bool) -> list[dict]:
    from damnit_dagster.events.inbox import EventInbox
    from damnit_dagster.plugins.home import inbox_path
    from damnit_dagster.storage.database import DamnitDB
    from damnit_dagster.storage.folder import init_damnit_dir

    work = Path(tempfile.mkdtemp(prefix="gui-", dir=root))
    folder = work / "amore"
    init_damnit_dir(folder, PROPOSAL, gui_brokers=brokers,
                    context_source=REPO / "damnit_dagster" / "templates" / "context_example.py")
    with DamnitDB(folder) as db:
        topic = f"test.damnit.db-{db.db_id}"
    received = Received(brokers, topic) if live else None
    try:
        with running_backend(folder, work / "home", instance_config=FORK) as backend:
            backend.wait_for_sensor()
            inbox = EventInbox(inbox_path())
            one_event(backend, inbox, events + 1, received)   # warm-up (first run worker)
            results = []
            for run in range(1, events + 1):
                results.append(one_event(backend, inbox, run, received))
                print(f"  {name} r{run}: {results[-1]}", file=sys.stderr)
                time.sleep(1.0)     # the Dagster run ends before the next event
    finally:
        if received is not None:
            received.close()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    from damnit_dagster.ops.mockdata import make_proposal

    with tempfile.TemporaryDirectory(prefix="gui-latency-") as tmp:
        root = Path(tmp)
        make_proposal(root / "data", PROPOSAL, range(1, args.events + 2), runs_without_proc=())
        os.environ["EXTRA_DATA_DATA_ROOT"] = os.environ["XFEL_DATA_ROOT"] = str(root / "data")
        os.environ.pop("AMORE_BROKER", None)
        table = {"no broker (gui_brokers none)": measure(
            "none", "none", args.events, root, live=False)}
        table["broker down (a closed port)"] = measure(
            "down", f"127.0.0.1:{free_port()}", args.events, root, live=False)
        with running_broker(root) as broker:
            table["broker up (nafka, 127.0.0.1)"] = measure(
                "up", broker, args.events, root, live=True)

    print(f"\nDAMNIT GUI updates, {args.events} migration events one at a time "
          "(medians; max in brackets)\n")
    print("| broker | event -> values in runs.sqlite (s) | values stored -> "
          "run_values_updated on the topic (ms) |")
    print("| --- | --- | --- |")
    for name, results in table.items():
        seen = [r["seen"] for r in results]
        message = [r["message_ms"] for r in results if "message_ms" in r]
        msg = (f"{statistics.median(message):.0f} ({max(message):.0f})" if message else "–")
        print(f"| {name} | {statistics.median(seen):.2f} ({max(seen):.2f}) | {msg} |")


if __name__ == "__main__":
    main()
