"""A batch of events written as the rows Dagster's SQLite event log writes, in few statements.

Dagster's ``SqliteEventLogStorage.store_event`` writes one event at a time: it serialises
a materialisation three times (the event row, the index shard's copy is the same
statement, the asset's ``last_materialization`` record and, for a check, its execution
row) and runs four to six statements in two transactions. For the events a step yields
for one run (materialisations, check evaluations, log messages) this module writes the
same rows with each event serialised once and one statement per table:

* run shard: the ``event_logs`` rows;
* index shard: the ``event_logs`` copies of the asset and check events (their ids come
  back from one ``INSERT ... RETURNING``), the indexed tags (``asset_event_tags``), the
  latest materialisation per asset (``asset_keys``, one upsert) and each check's
  execution row (``asset_check_executions``, updated from its planned row).

A new run's planned materialisations and checks (one of each per asset, which Dagster
sends as one batch when ``DAGSTER_EVENT_BATCH_SIZE`` is set) are written the same way:
their ``event_logs`` rows, the assets' last run and the checks' ``PLANNED`` rows.

The ``event_logs`` rows hold each event compressed (:mod:`.event_compression`), which the
storage's connections read back as the JSON Dagster writes; every other value must stay
exactly Dagster's, since the webserver and the daemon read them:
``tests/plugins/test_event_rows.py`` stores the same events through Dagster's storage and
through ours and compares every table (records expanded), so a Dagster upgrade changing
them fails there.
"""
from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from damnit_dagster.plugins.dagster_private import (
    AssetCheckExecutionRecordStatus,
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    AssetKeyTable,
    SqlEventLogStorageTable,
    datetime_from_timestamp,
)

MATERIALIZATION = dg.DagsterEventType.ASSET_MATERIALIZATION
CHECK_EVALUATION = dg.DagsterEventType.ASSET_CHECK_EVALUATION
PLANNED = dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
CHECK_PLANNED = dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED


def batchable(event: dg.EventLogEntry) -> bool:
    """Whether :func:`write_run_shard` and :func:`write_index_shard` write ``event`` as
    Dagster would: a log message, a materialisation, a check evaluation of a run, or what a
    new run plans to materialise and check (its first events)."""
    dagster_event = event.dagster_event
    if dagster_event is None:
        return True
    if dagster_event.event_type in (MATERIALIZATION, PLANNED):
        return dagster_event.asset_key is not None
    return (dagster_event.event_type in (CHECK_EVALUATION, CHECK_PLANNED)
            and bool(event.run_id))


def _indexed(event: dg.EventLogEntry) -> bool:
    return event.dagster_event is not None


def write_run_shard(conn: Connection, rows: Sequence[dict]) -> None:
    """Insert the ``event_logs`` rows (as stored) of a run's database."""
    conn.execute(SqlEventLogStorageTable.insert(), list(rows))


def write_index_shard(conn: Connection, storage, events: Sequence[dg.EventLogEntry],
                      rows: Sequence[dict], stored: Sequence[dict]) -> None:
    """Write what Dagster's storage writes to the index shard for ``events`` (all
    :func:`batchable`; ``rows`` their ``event_logs`` rows with the events' JSON, ``stored``
    the same rows as stored, ``storage`` the event log)."""
    indexed = [i for i, e in enumerate(events) if _indexed(e)]
    if not indexed:
        return
    pairs = [(events[i], rows[i]) for i in indexed]
    ids = conn.execute(
        SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id,
                                                   sort_by_parameter_order=True),
        [stored[i] for i in indexed]).scalars().all()
    def of_type(event_type):
        return [(e, r, i) for (e, r), i in zip(pairs, ids)
                if e.dagster_event.event_type == event_type]

    materialized, planned = of_type(MATERIALIZATION), of_type(PLANNED)
    if materialized:
        _write_tags(conn, storage, materialized)
        _write_asset_keys(conn, storage, materialized)
    if planned:
        _write_asset_keys(conn, storage, planned)
    _write_planned_checks(conn, of_type(CHECK_PLANNED))
    for event, row, event_id in of_type(CHECK_EVALUATION):
        _write_check_execution(conn, event, row, event_id)


def _write_tags(conn: Connection, storage, materialized: list) -> None:
    values = [{"event_id": event_id, "asset_key": row["asset_key"], "key": key, "value": value,
               "event_timestamp": row["timestamp"]}
              for event, row, event_id in materialized
              for key, value in storage._tags_for_asset_event(event).items()]
    if values and storage.has_table(AssetEventTagsTable.name):
        conn.execute(AssetEventTagsTable.insert(), values)


def _last_materialization(event_json: str, event_id: int) -> str:
    """``serialize_value(EventLogRecord(event_id, event))`` from the event's JSON."""
    return (f'{{"__class__": "EventLogRecord", "event_log_entry": {event_json}, '
            f'"storage_id": {event_id}}}')


def _write_asset_keys(conn: Connection, storage, events: list) -> None:
    """The assets' latest event: for materialisations the event itself, for planned
    ones only the run (``events`` all of one of the two types)."""
    with_timestamp = storage._has_asset_key_index_cols_on_connection(conn)
    values = []
    for event, row, event_id in events:
        value = {"asset_key": row["asset_key"], "last_run_id": event.run_id}
        if event.dagster_event.event_type == MATERIALIZATION:
            value["last_materialization"] = _last_materialization(row["event"], event_id)
        if with_timestamp:
            value["last_materialization_timestamp"] = datetime_from_timestamp(event.timestamp)
        values.append(value)
    upsert = sqlite_insert(AssetKeyTable)
    columns = [c for c in values[0] if c != "asset_key"]
    conn.execute(upsert.on_conflict_do_update(
        index_elements=[AssetKeyTable.c.asset_key],
        set_={c: upsert.excluded[c] for c in columns}), values)


def _write_planned_checks(conn: Connection, planned: list) -> None:
    """Dagster's ``_store_asset_check_evaluation_planned``: one ``PLANNED`` execution row
    per check and partition of the run."""
    values = []
    for event, row, event_id in planned:
        data = event.dagster_event.event_specific_data
        partitions = (data.partitions_subset.get_partition_keys() if data.partitions_subset
                      else [None])
        values.extend({"asset_key": data.asset_key.to_string(), "check_name": data.check_name,
                       "partition": partition, "run_id": event.run_id,
                       "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
                       "evaluation_event": row["event"],
                       "evaluation_event_timestamp": row["timestamp"],
                       "evaluation_event_storage_id": event_id} for partition in partitions)
    if values:
        conn.execute(AssetCheckExecutionsTable.insert(), values)


def _write_check_execution(conn: Connection, event: dg.EventLogEntry, row: dict,
                           event_id: int) -> None:
    """Dagster's ``_update_asset_check_evaluation``: the row its planned event made, or a
    new one if there is none."""
    evaluation = event.dagster_event.event_specific_data
    target = evaluation.target_materialization_data
    status = (AssetCheckExecutionRecordStatus.SUCCEEDED if evaluation.passed
              else AssetCheckExecutionRecordStatus.FAILED)
    values = {"execution_status": status.value, "evaluation_event": row["event"],
              "evaluation_event_timestamp": row["timestamp"],
              "evaluation_event_storage_id": event_id,
              "materialization_event_storage_id": target.storage_id if target else None,
              "partition": evaluation.partition}
    key = evaluation.asset_key.to_string()
    rows = AssetCheckExecutionsTable.c
    updated = conn.execute(AssetCheckExecutionsTable.update().where(
        rows.asset_key == key, rows.check_name == evaluation.check_name,
        rows.run_id == event.run_id,
        rows.partition.is_(None) if evaluation.partition is None
        else rows.partition == evaluation.partition).values(**values)).rowcount
    if updated == 0:
        conn.execute(AssetCheckExecutionsTable.insert().values(
            asset_key=key, check_name=evaluation.check_name, run_id=event.run_id, **values))
    elif updated > 1:
        raise dg.DagsterInvariantViolationError(
            f"Updated {updated} rows for asset check evaluation {evaluation.asset_check_key} "
            "as a result of duplicate AssetCheckPlanned events.")
