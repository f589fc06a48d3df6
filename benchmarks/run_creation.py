"""What creating a Dagster run costs in the event log: a new run's database file (shard).

Dagster's SQLite event log keeps one database per run in ``history/runs/``. The first
event of a run creates it (tables, indexes, the alembic stamp), and every other process
that opens it checks its alembic revision first. Measured in a fresh instance directory
with the project's ``dagster.yaml`` (``KeptOpenSqliteEventLogStorage``) and, for
comparison, Dagster's own storage, medians over ``--runs``:

* **create run**: ``instance.create_run_for_job`` of a job of 25 partitioned assets for
  one partition, as the event sensor's run request does (the run, its execution plan and
  one "planned materialization" event per asset, the first into the new shard);
* **first event of a new run**: storing one event for a run id not seen before, less the
  same for a second event of that run;
* **open an existing run**: reading a run's events with a new storage object (as the run
  worker, the webserver or another process does), less a second read;
* **of which shard set-up**: the share of ``create run`` in the storage's ``_initdb``
  (alembic), from a profile.

    python benchmarks/run_creation.py [--runs 20]
"""
from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def user_message(run_id: str):
    from dagster import EventLogEntry

    return EventLogEntry(error_info=None, level=logging.INFO, user_message="m", run_id=run_id,
                         timestamp=time.time())


def asset_job(partitions: int):
    """A job of 25 partitioned assets, as the context's raw variables."""
    import dagster as dg

    parts = dg.StaticPartitionsDefinition([str(i) for i in range(1, partitions + 1)])

    def make(i):
        @dg.asset(name=f"var_{i:02d}", partitions_def=parts)
        def var(): ...
        return var

    defs = dg.Definitions(assets=[make(i) for i in range(25)])
    return defs.resolve_implicit_global_asset_job_def()


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def measure(home: Path, runs: int) -> dict:
    """Medians (s) of the measured steps in the instance at ``home``."""
    import dagster as dg

    job = asset_job(2 * runs + 1)
    keys = set(job.asset_layer.selected_asset_keys)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        base = storage._base_dir
        storage.store_event(user_message("warm-up"))   # the index shard and imports

        def create(i):
            return instance.create_run_for_job(job, tags={"dagster/partition": str(i)},
                                               asset_selection=keys)

        create(2 * runs + 1)
        created = [timed(create, i) for i in range(1, runs + 1)]
        profile = cProfile.Profile()
        profile.enable()
        for i in range(runs + 1, 2 * runs + 1):
            create(i)
        profile.disable()
        stats = pstats.Stats(profile)
        total = sum(tt for (_f, _l, _n), (_cc, _nc, tt, _ct, _c) in stats.stats.items())
        initdb = sum(ct for (f, _l, name), (_cc, _nc, _tt, ct, _c) in stats.stats.items()
                     if name == "_initdb" and "sqlite_event_log" in f)
        first, opened = [], []
        for _ in range(runs):
            run_id = str(uuid.uuid4())
            one = timed(storage.store_event, user_message(run_id))
            first.append(one - timed(storage.store_event, user_message(run_id)))
            other = type(storage)(base)
            one = timed(other.get_logs_for_run, run_id)
            opened.append(one - timed(other.get_logs_for_run, run_id))
            other.dispose()
    return {"create": statistics.median(created), "first": statistics.median(first),
            "open": statistics.median(opened), "initdb_share": initdb / total}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="run_creation-"))
    try:
        homes = {"ours": tmp / "ours", "Dagster": tmp / "stock"}
        for home in homes.values():
            home.mkdir()
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        shutil.copyfile(REPO / "dagster_home" / "dagster.yaml", homes["ours"] / "dagster.yaml")
        results = {name: measure(home, args.runs) for name, home in homes.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmedians of {args.runs} runs (ms)\n")
    print("| | " + " | ".join(results) + " |")
    print("| --- |" + " --- |" * len(results))
    for key, label in (("create", "create run (25 assets, 1 partition)"),
                       ("first", "first event of a new run"),
                       ("open", "open an existing run (new storage object)")):
        print(f"| {label} | " + " | ".join(f"{1000 * r[key]:.1f}" for r in results.values())
              + " |")
    print("| of which shard set-up (% of create run) | "
          + " | ".join(f"{100 * r['initdb_share']:.0f} %" for r in results.values()) + " |")


if __name__ == "__main__":
    sys.exit(main())
