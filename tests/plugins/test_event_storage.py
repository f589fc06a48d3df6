"""The kept-open SQLite event log: same files and answers as Dagster's, live watchers work."""
import logging
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage

from damnit_dagster.plugins.event_storage import (
    INDEX_PAGE_SIZE,
    RUN_SHARD_PAGE_SIZE,
    KeptOpenSqliteEventLogStorage,
)
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
    while it is open, another process with Dagster's stock storage finds every partition
    and check there, and one opening the instance from its dagster.yaml reads the run's
    events (stored compressed, which only the project's storage expands)."""
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
print(stock.get_latest_asset_check_execution_by_key(
    [dg.AssetCheckKey(key, "positive")])[dg.AssetCheckKey(key, "positive")].status.value)
instance = dg.DagsterInstance.from_config({str(home)!r})
records = instance.fetch_materializations(key, limit=10).records
print(len(records), len(instance.all_logs(records[0].run_id)) > 5)
"""], capture_output=True, text=True, timeout=120)
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout.split("\n")[:3] == ["['1', '3']", "FAILED", "2 True"]


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


def test_stock_storage_writes_alongside(tmp_path):
    """Both classes on one folder at once: ours reads the stock storage's events (JSON
    text) and its own (compressed) in order, in this object and in another."""
    ours = KeptOpenSqliteEventLogStorage(str(tmp_path))
    stock = SqliteEventLogStorage(str(tmp_path))
    ours.store_event(user_message("run-b", "from ours"))
    stock.store_event(user_message("run-b", "from stock"))
    ours.store_event(user_message("run-b", "ours again"))
    expected = ["from ours", "from stock", "ours again"]
    other = KeptOpenSqliteEventLogStorage(str(tmp_path))
    assert [e.user_message for e in other.get_logs_for_run("run-b")] == expected
    assert [e.user_message for e in ours.get_logs_for_run("run-b")] == expected
    other.dispose()
    ours.dispose()


def test_wipe_then_store(tmp_path):
    """Wiping deletes the run databases; later events go to new files, not deleted ones."""
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path))
    storage.store_event(user_message("run-c", "before"))
    storage.wipe()
    assert storage.get_logs_for_run("run-c") == []
    storage.store_event(user_message("run-c", "after"))
    other = KeptOpenSqliteEventLogStorage(str(tmp_path))
    assert [e.user_message for e in other.get_logs_for_run("run-c")] == ["after"]
    other.dispose()
    storage.dispose()


def test_many_runs_keep_few_files_open(tmp_path):
    """A process reading many runs' logs (the webserver) keeps a bounded number open."""
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path))
    for i in range(30):
        storage.store_event(user_message(f"run-{i}", f"event {i}"))
    assert len(list(storage._engines.keys())) <= 9
    assert [e.user_message for e in storage.get_logs_for_run("run-0")] == ["event 0"]
    storage.dispose()


def schema(path: Path) -> tuple:
    """An SQLite file's tables, indexes and their SQL, its alembic revision, journal mode."""
    conn = sqlite3.connect(path)
    try:
        return (conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                             "ORDER BY type, name").fetchall(),
                conn.execute("SELECT version_num FROM alembic_version").fetchall(),
                conn.execute("PRAGMA journal_mode").fetchone())
    finally:
        conn.close()


def dagsters_shard(tmp_path) -> tuple:
    """The schema of a run shard made by Dagster's own storage."""
    stock = SqliteEventLogStorage(str(tmp_path / "stock"))
    stock.store_event(user_message("run-stock", "first"))
    stock.dispose()
    return schema(tmp_path / "stock" / "run-stock.db")


def counting_initdb(monkeypatch) -> list:
    """Every call of Dagster's ``_initdb`` (alembic) from now on, by database path."""
    calls = []
    original = SqliteEventLogStorage._initdb

    def initdb(self, engine, *args, **kwargs):
        calls.append(Path(engine.url.database).name)
        return original(self, engine, *args, **kwargs)

    monkeypatch.setattr(SqliteEventLogStorage, "_initdb", initdb)
    return calls


def test_new_run_shards_are_copies_of_dagsters_empty_shard(tmp_path, monkeypatch):
    """A run's shard is a copy of one empty shard made once by Dagster's ``_initdb``: same
    tables, indexes, alembic revision and journal mode as Dagster's own; no alembic for
    the runs after the first, in this process or another; the runs' events read back
    through the instance and by the UI's GraphQL."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    expected = dagsters_shard(tmp_path)
    home = project_home(tmp_path)
    calls = counting_initdb(monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        first = dg.materialize([value], instance=instance, partition_key="1")
        made = list(calls)
        second = dg.materialize([value, positive], instance=instance, partition_key="2")
        runs = home / "history" / "runs"
        [template] = runs.glob(".empty-run-shard-*")
        assert made[0] == "index.db" and len(made) == 2 and made[1].startswith(template.name)
        assert calls == made
        other = KeptOpenSqliteEventLogStorage(str(runs))
        other.store_event(user_message("run-other", "from another process"))
        other.dispose()
        assert calls == made
        for run_id in (first.run_id, second.run_id, "run-other"):
            assert schema(runs / f"{run_id}.db") == expected, run_id
        assert schema(template) == expected

        logs = instance.all_logs(second.run_id)
        assert [e.dagster_event_type for e in logs if e.is_dagster_event][-1] == \
            dg.DagsterEventType.RUN_SUCCESS
        assert sorted(instance.get_materialized_partitions(value.key)) == ["1", "2"]
        with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
            result = execute_dagster_graphql(context.create_request_context(), """
                query($runId: ID!) { logsForRun(runId: $runId) {
                    ... on EventConnection { events { __typename } } } }""",
                                             {"runId": second.run_id})
        types = [e["__typename"] for e in result.data["logsForRun"]["events"]]
        assert "MaterializationEvent" in types and "ExecutionStepSuccessEvent" in types
        assert len(types) == len(logs)


def page_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA page_size").fetchone()[0]


def test_a_new_index_shard_has_larger_pages(tmp_path):
    """A new index shard is made in pages of ``INDEX_PAGE_SIZE``, a new run shard in the
    smaller ``RUN_SHARD_PAGE_SIZE`` (an empty shard takes a page per table and index); an
    index made by Dagster's own storage keeps its pages and its events."""
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path / "ours"))
    storage.store_event(user_message("run-1", "first"))
    storage.store_event(user_message("run-2", "second"))
    storage.dispose()
    assert page_size(tmp_path / "ours" / "index.db") == INDEX_PAGE_SIZE != 4096
    for run in ("run-1", "run-2"):
        assert page_size(tmp_path / "ours" / f"{run}.db") == RUN_SHARD_PAGE_SIZE < 4096
    stock = SqliteEventLogStorage(str(tmp_path / "stock"))
    stock.store_event(user_message("run-1", "first"))
    stock.dispose()
    assert (tmp_path / "ours" / "run-2.db").stat().st_size * 3 \
        < (tmp_path / "stock" / "run-1.db").stat().st_size
    shutil.rmtree(tmp_path / "stock")

    SqliteEventLogStorage(str(tmp_path / "stock")).dispose()
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path / "stock"))
    storage.store_event(user_message("run-3", "on Dagster's index"))
    assert [e.user_message for e in storage.get_logs_for_run("run-3")] == ["on Dagster's index"]
    storage.dispose()
    assert page_size(tmp_path / "stock" / "index.db") == 4096


def test_a_missing_or_damaged_template_is_made_again(tmp_path, monkeypatch):
    """Without its template, or with a damaged one, the next new run's shard makes it again
    with Dagster's ``_initdb``, and the run's shard is still Dagster's."""
    expected = dagsters_shard(tmp_path)
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path / "ours"))
    storage.store_event(user_message("run-1", "makes the template"))
    [template] = (tmp_path / "ours").glob(".empty-run-shard-*")
    calls = counting_initdb(monkeypatch)
    template.unlink()
    storage.store_event(user_message("run-2", "template missing"))
    data = template.read_bytes()   # a table's page overwritten: alembic_version reads
    size = page_size(template)
    template.write_bytes(data[:5 * size] + b"\xff" * size + data[6 * size:])
    storage.store_event(user_message("run-3", "template damaged"))
    template.write_bytes(b"not a database" * 100)
    storage.store_event(user_message("run-4", "template overwritten"))
    assert len(calls) == 3 and all(n.startswith(template.name) for n in calls)
    for run in ("run-1", "run-2", "run-3", "run-4"):
        assert schema(tmp_path / "ours" / f"{run}.db") == expected, run
        assert [e.user_message for e in storage.get_logs_for_run(run)] != []
    assert schema(template) == expected
    assert sorted(p.name for p in (tmp_path / "ours").iterdir() if ".tmp" in p.name) == []
    storage.dispose()


def test_a_shard_made_meanwhile_by_another_process_is_kept(tmp_path):
    """A shard another process creates between our look and our copy keeps its events."""
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path))
    storage.store_event(user_message("run-0", "makes the template"))
    make_template = storage._template

    def template_while_another_creates_the_shard():
        stock = SqliteEventLogStorage(str(tmp_path))
        stock.store_event(user_message("run-1", "from the other process"))
        stock.dispose()
        return make_template()

    storage._template = template_while_another_creates_the_shard
    storage.store_event(user_message("run-1", "from ours"))
    assert [e.user_message for e in storage.get_logs_for_run("run-1")] == [
        "from the other process", "from ours"]
    storage.dispose()


def test_without_a_template_a_shard_is_made_by_dagster(tmp_path, monkeypatch):
    """If no template can be made, a new run's shard is made by Dagster's ``_initdb``."""
    expected = dagsters_shard(tmp_path)
    storage = KeptOpenSqliteEventLogStorage(str(tmp_path / "ours"))
    storage.store_event(user_message("run-1", "makes the template"))
    [template] = (tmp_path / "ours").glob(".empty-run-shard-*")
    template.unlink()
    template.mkdir()   # neither a database nor replaceable by one
    calls = counting_initdb(monkeypatch)
    storage.store_event(user_message("run-2", "no template"))
    assert calls[-1] == "run-2.db"
    assert schema(tmp_path / "ours" / "run-2.db") == expected
    assert [e.user_message for e in storage.get_logs_for_run("run-2")] == ["no template"]
    storage.dispose()


def test_a_template_of_another_dagster_version_is_replaced(tmp_path):
    """A template named for other versions (before an upgrade) is neither used nor kept."""
    base = tmp_path / "ours"
    base.mkdir()
    old = base / ".empty-run-shard-dagster-0.0.1-sqlalchemy-1.0.sqlite"
    old.write_bytes(b"an old schema")
    storage = KeptOpenSqliteEventLogStorage(str(base))
    storage.store_event(user_message("run-1", "after the upgrade"))
    storage.dispose()
    [template] = base.glob(".empty-run-shard-*")
    assert template != old and dg.__version__ in template.name
    assert schema(base / "run-1.db") == dagsters_shard(tmp_path)
