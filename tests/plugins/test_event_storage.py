"""The kept-open SQLite event log: same files and answers as Dagster's, live watchers work."""
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage

from damnit_dagster.plugins.event_storage import KeptOpenSqliteEventLogStorage
from support.paths import REPO

partitions = dg.StaticPartitionsDefinition(["1", "2", "3"])


@dg.asset(partitions_def=partitions)
def value(context: dg.AssetExecutionContext):
    return int(context.partition_key) * 10


@dg.asset_check(asset=value)
def positive(context) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                               description="just a warning")


def user_message(run_id: str, text: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=logging.INFO, user_message=text, run_id=run_id,
                         timestamp=time.time())


def project_home(tmp_path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


def test_project_instance_stores_where_dagster_reads(tmp_path):
    """The project's dagster.yaml uses the kept-open storage in DAGSTER_HOME/history/runs;
    while it is open, another process with Dagster's stock storage sees every partition's
    materialization and check, and the run's events."""
    home = project_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, KeptOpenSqliteEventLogStorage)
        assert Path(storage._base_dir) == home / "history" / "runs"
        for key in ("1", "3"):
            assert dg.materialize([value, positive], instance=instance, partition_key=key).success
        reader = subprocess.run([sys.executable, "-c", f"""
import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage
stock = SqliteEventLogStorage({str(home / "history" / "runs")!r})
key = dg.AssetKey("value")
print(sorted(stock.get_materialized_partitions(key)))
records = stock.fetch_materializations(key, limit=10).records
print(len(records), len(stock.get_logs_for_run(records[0].run_id)) > 5)
print(stock.get_latest_asset_check_execution_by_key(
    [dg.AssetCheckKey(key, "positive")])[dg.AssetCheckKey(key, "positive")].status.value)
"""], capture_output=True, text=True, timeout=120)
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout.split("\n")[:3] == ["['1', '3']", "2 True", "FAILED"]


@dg.asset(partitions_def=partitions)
def counted(context: dg.AssetExecutionContext) -> None:
    context.log.info(f"partitions {context.partition_keys}")


@dg.asset(partitions_def=partitions)
def fails_for_2(context: dg.AssetExecutionContext) -> None:
    if context.partition_keys == ["2"]:
        raise RuntimeError("no data for 2")


def planned(instance, run_id: str) -> list:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]


def test_a_ranged_run_plans_each_asset_once_a_single_partition_run_per_partition(tmp_path):
    """A reprocess of many runs stores one planned event per variable, not one per run;
    a single run's processing keeps the per-partition form, so the UI still marks its
    partition failed when the Dagster run fails (and in progress while it runs)."""
    with dg.DagsterInstance.from_config(str(project_home(tmp_path))) as instance:
        ranged = dg.materialize([counted, fails_for_2], instance=instance, tags={
            "dagster/asset_partition_range_start": "1", "dagster/asset_partition_range_end": "3"})
        failed = dg.materialize([fails_for_2], instance=instance, partition_key="2",
                                raise_on_error=False)
        attempts = instance.event_log_storage.\
            get_latest_asset_partition_materialization_attempts_without_materializations(
                fails_for_2.key)

    assert ranged.success and not failed.success
    events = planned(instance, ranged.run_id)
    assert sorted(e.asset_key.path[-1] for e in events) == ["counted", "fails_for_2"]
    assert all(sorted(e.partitions_subset.get_partition_keys()) == ["1", "2", "3"]
               for e in events)
    [single] = planned(instance, failed.run_id)
    assert (single.partition, single.partitions_subset) == ("2", None)
    assert set(attempts) == {"2"}   # the failed-partition mark of the UI


def test_watcher_sees_events_of_a_writer_that_keeps_its_connection(tmp_path):
    """The UI's live run view: a watcher in one storage object (the webserver) is called
    for each event another one (the run worker) stores, without the writer closing."""
    writer = KeptOpenSqliteEventLogStorage(str(tmp_path))
    viewer = KeptOpenSqliteEventLogStorage(str(tmp_path))
    seen, arrived = [], threading.Event()

    def callback(entry, cursor):
        seen.append(entry.user_message)
        if len(seen) == 3:
            arrived.set()

    writer.store_event(user_message("run-a", "first"))
    viewer.watch("run-a", None, callback)
    try:
        time.sleep(0.5)
        for text in ("second", "third"):
            writer.store_event(user_message("run-a", text))
        assert arrived.wait(10), f"watcher saw only {seen}"
        assert seen == ["first", "second", "third"]
    finally:
        viewer.end_watch("run-a", callback)
        viewer.dispose()
        writer.dispose()


def test_stock_storage_writes_and_reads_alongside(tmp_path):
    """Both classes on one folder at once: each sees the other's events, in order."""
    ours = KeptOpenSqliteEventLogStorage(str(tmp_path))
    stock = SqliteEventLogStorage(str(tmp_path))
    ours.store_event(user_message("run-b", "from ours"))
    stock.store_event(user_message("run-b", "from stock"))
    ours.store_event(user_message("run-b", "ours again"))
    expected = ["from ours", "from stock", "ours again"]
    assert [e.user_message for e in stock.get_logs_for_run("run-b")] == expected
    assert [e.user_message for e in ours.get_logs_for_run("run-b")] == expected
    ours.dispose()


def test_wipe_then_store(tmp_path):
    """Wiping deletes the run databases; later events go to new files, not deleted ones."""
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path))
    storage.store_event(user_message("run-c", "before"))
    storage.wipe()
    assert storage.get_logs_for_run("run-c") == []
    storage.store_event(user_message("run-c", "after"))
    stock = SqliteEventLogStorage(str(tmp_path))
    assert [e.user_message for e in stock.get_logs_for_run("run-c")] == ["after"]
    storage.dispose()


def test_many_runs_keep_few_files_open(tmp_path):
    """A process reading many runs' logs (the webserver) keeps a bounded number open."""
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path))
    for i in range(30):
        storage.store_event(user_message(f"run-{i}", f"event {i}"))
    assert len(storage._engines) <= 9
    assert [e.user_message for e in storage.get_logs_for_run("run-0")] == ["event 0"]
    storage.dispose()
