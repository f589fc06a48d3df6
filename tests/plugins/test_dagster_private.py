"""Dagster's private names the plug-ins rely on are where we expect them: a Dagster
upgrade that moves one fails here, naming it, instead of breaking a backend silently."""
import inspect
import re
from pathlib import Path

import pytest

from damnit_dagster.plugins import dagster_private

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(dagster_private.NAMES))
def test_every_private_name_resolves(name):
    module, attribute = dagster_private.NAMES[name]
    assert getattr(dagster_private, name) is not None, f"{module}.{attribute} moved"


def test_the_daemon_loop_intervals_we_shorten_exist():
    assert isinstance(dagster_private.sensor_daemon.MIN_INTERVAL_LOOP_TIME, (int, float))
    assert isinstance(dagster_private.daemon_controller.DEFAULT_DAEMON_INTERVAL_SECONDS,
                      (int, float))


def test_the_run_worker_body_takes_what_the_launcher_passes():
    params = inspect.signature(dagster_private.execute_run_command_body).parameters
    assert list(params)[:3] == ["run_id", "instance", "write_stream_fn"]
    assert "set_exit_code_on_failure" in params


def test_backfills_are_made_as_the_ui_makes_them():
    params = inspect.signature(dagster_private.PartitionBackfill.from_asset_partitions).parameters
    for used in ("backfill_id", "asset_graph", "partition_names", "asset_selection",
                 "backfill_timestamp", "tags", "dynamic_partitions_store", "all_partitions",
                 "title", "description", "run_config"):
        assert used in params, used


def test_the_sqlite_event_log_internals_we_override_exist():
    storage = dagster_private.SqliteEventLogStorage
    for name in ("_initdb", "_connect", "has_table", "store_event", "store_event_batch",
                 "_has_asset_key_index_cols_on_connection", "_event_to_row",
                 "_tags_for_asset_event", "path_for_shard", "conn_string_for_shard"):
        assert callable(getattr(storage, name, None)), name
    # a database with an alembic revision is left as it is (new shards are template copies)
    assert "if not (db_revision and head_revision):" in inspect.getsource(storage._initdb)
    assert isinstance(
        storage.supports_partition_subset_in_asset_materialization_planned_events, property)
    source = inspect.getsource(storage)
    assert "self._initialized_dbs = set()" in source and "self._db_lock = " in source


def test_no_module_outside_the_plugins_imports_dagster_privates():
    private_import = re.compile(r"^\s*(from|import)\s+dagster\._", re.M)
    offenders = [str(p.relative_to(REPO))
                 for package in ("damnit_dagster", "context_loader")
                 for p in (REPO / package).rglob("*.py")
                 if private_import.search(p.read_text())
                 and p.parent != REPO / "damnit_dagster" / "plugins"]
    assert offenders == []


def test_the_run_retry_cursors_we_set_are_the_ones_dagster_reads():
    consumer = dagster_private.event_log_consumer
    assert {consumer._create_cursor_key(t) for t in consumer.DAGSTER_EVENT_TYPES} == {
        "EVENT_LOG_CONSUMER_CURSOR-PIPELINE_FAILURE", "EVENT_LOG_CONSUMER_CURSOR-PIPELINE_SUCCESS"}
    assert "if cursor is None:" in inspect.getsource(consumer.EventLogConsumerDaemon.run_iteration)
