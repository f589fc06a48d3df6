"""Batches of events are written as exactly the rows Dagster's own SQLite event log writes
for them one at a time: the webserver and the daemon read these tables, and a Dagster
upgrade that changes what they hold must fail here."""
import logging
import os
import sqlite3
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage

from damnit_dagster.plugins.event_compression import expand
from damnit_dagster.plugins.event_storage import KeptOpenSqliteEventLogStorage

RUN_ID = "0123abcd-0000-0000-0000-000000000000"
PARTITIONS = dg.StaticPartitionsDefinition(["1", "2"])
#: Times set when a row or the database is made, not from the events.
MADE_AT = {"create_timestamp", "update_timestamp", "migration_completed"}


def entry(event_type, data=None, text="", t=None) -> EventLogEntry:
    dagster_event = None if event_type is None else DagsterEvent(
        event_type.value, job_name="all", event_specific_data=data, step_key="p1_local",
        message=text, logging_tags={"job_name": "all", "step_key": "p1_local"})
    return EventLogEntry(error_info=None, level=logging.DEBUG, user_message=text,
                         run_id=RUN_ID, timestamp=t or time.time(), step_key="p1_local",
                         job_name="all", dagster_event=dagster_event)


def materialization(name, partition, t=None) -> EventLogEntry:
    mat = dg.AssetMaterialization(
        asset_key=["p1", name], partition=partition,
        metadata={"summary": 1.5, "hdf5": dg.MetadataValue.path("/x/p1_r1.h5")},
        tags={"dagster/code_version": "abc", "dagster/data_version": "abc",
              "dagster/input_data_version/p1/a": "def",
              "dagster/input_event_pointer/p1/a": "NULL"})
    return entry(dg.DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(mat),
                 f"Materialized value p1 {name}.", t)


def check(name, partition, severity) -> EventLogEntry:
    evaluation = dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(["p1", name]), check_name="evaluation", passed=False,
        partition=partition, severity=severity, description="skipped: no data",
        metadata={"error": "no data"})
    return entry(dg.DagsterEventType.ASSET_CHECK_EVALUATION, evaluation, "did not pass")


def planned_check(name, keys=("1",)) -> EventLogEntry:
    planned = AssetCheckEvaluationPlanned(
        asset_key=dg.AssetKey(["p1", name]), check_name="evaluation",
        partitions_subset=PARTITIONS.subset_with_partition_keys(list(keys)))
    return entry(dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED, planned)


def planned_materialization(name, partition=None, keys=None) -> EventLogEntry:
    subset = PARTITIONS.subset_with_partition_keys(list(keys)) if keys else None
    planned = AssetMaterializationPlannedData(
        dg.AssetKey(["p1", name]), partition=partition, partitions_subset=subset)
    return entry(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, planned)


def tables(path: Path) -> dict[str, list]:
    """Every row of every table of an SQLite file, without the times in ``MADE_AT``,
    compressed records expanded."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {name: [{k: expand(row[k]) for k in row.keys() if k not in MADE_AT}
                       for row in conn.execute(f"SELECT * FROM {name} ORDER BY rowid")]
                for name in names}
    finally:
        conn.close()


def both_storages(tmp_path: Path, before, batch):
    """Dagster's storage in ``stock/`` with ``before`` and ``batch`` stored one at a time,
    ours in ``ours/`` with only ``before``."""
    stock = SqliteEventLogStorage(str(tmp_path / "stock"))
    ours = KeptOpenSqliteEventLogStorage(str(tmp_path / "ours"))
    for event in before:
        stock.store_event(event)
        ours.store_event(event)
    for event in batch:
        stock.store_event(event)
    return stock, ours


def assert_same_rows(tmp_path: Path) -> None:
    """Dagster's storage (``stock/``) and ours (``ours/``) hold the same tables and rows."""
    for shard in ("index.db", f"{RUN_ID}.db"):
        expected, got = tables(tmp_path / "stock" / shard), tables(tmp_path / "ours" / shard)
        assert got.keys() == expected.keys()
        for name in expected:
            assert got[name] == expected[name], (shard, name)


@pytest.fixture
def events():
    """Before: a planned check and an earlier materialisation; then one run's batch."""
    t = time.time()
    before = [planned_check("b"), materialization("a", "2", t - 10)]
    batch = [materialization("a", "1", t), check("b", "1", dg.AssetCheckSeverity.WARN),
             check("c", "1", dg.AssetCheckSeverity.ERROR), materialization("d", "1", t),
             entry(None, text="r1: 2 ok, 1 skipped, 1 failed")]
    return before, batch


def test_a_batch_writes_the_rows_dagster_writes_one_at_a_time(tmp_path, events):
    before, batch = events
    stock, ours = both_storages(tmp_path, before, batch)
    with ours.stored_together():
        for event in batch:
            ours.store_event(event)
        assert tables(tmp_path / "ours" / f"{RUN_ID}.db")["event_logs"] == \
            tables(tmp_path / "stock" / f"{RUN_ID}.db")["event_logs"][:len(before)]
    ours.dispose()
    stock.dispose()
    assert_same_rows(tmp_path)
    assert len(tables(tmp_path / "ours" / "index.db")["asset_check_executions"]) == 2


def test_a_new_runs_planned_events_are_written_as_dagster_writes_them(tmp_path):
    """A run's planned materialisations and checks come as one batch (Dagster's event
    batching, switched on by the storage): the same rows as Dagster's one at a time."""
    before = [materialization("a", "2")]   # an asset with an earlier materialisation
    batch = [planned_materialization("a", keys=["1", "2"]), planned_materialization("b", "1"),
             planned_check("a", keys=["1", "2"]), planned_check("b")]
    stock, ours = both_storages(tmp_path, before, batch)
    ours.store_event_batch(batch)
    ours.dispose()
    stock.dispose()
    assert_same_rows(tmp_path)
    executions = tables(tmp_path / "ours" / "index.db")["asset_check_executions"]
    assert sorted((e["asset_key"], e["partition"]) for e in executions) == [
        ('["p1", "a"]', "1"), ('["p1", "a"]', "2"), ('["p1", "b"]', "1")]


def test_the_storage_switches_on_dagsters_event_batches(tmp_path, monkeypatch):
    """Without DAGSTER_EVENT_BATCH_SIZE, Dagster stores a run's planned events one by one."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")   # restored (unset) afterwards
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE")
    with dg.instance_for_test(overrides={"event_log_storage": {
            "module": "damnit_dagster.plugins.event_storage",
            "class": "KeptOpenSqliteEventLogStorage"}}) as instance:
        assert isinstance(instance.event_log_storage, KeptOpenSqliteEventLogStorage)
        assert int(os.environ["DAGSTER_EVENT_BATCH_SIZE"]) > 0


def test_a_failed_scope_stores_none_of_its_events(tmp_path, events):
    _, batch = events
    ours = KeptOpenSqliteEventLogStorage(str(tmp_path))
    with pytest.raises(RuntimeError), ours.stored_together():
        ours.store_event(batch[0])
        raise RuntimeError("step failed")
    ours.store_event(batch[-1])   # outside the scope: stored at once
    assert [r.event_log_entry.user_message for r in ours.get_records_for_run(RUN_ID).records] \
        == [batch[-1].user_message]
    assert ours.fetch_materializations(dg.AssetKey(["p1", "a"]), limit=5).records == []
    ours.dispose()
