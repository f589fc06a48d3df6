"""Trim a folder's Dagster instance: old runs' logs go, every partition's latest state stays.

Dagster's event log grows with every Dagster run and nothing trims it. :func:`trim` takes
the finished Dagster runs last updated more than ``days`` ago and

* deletes each one whose asset events have all been superseded (every variable and run
  number it materialised, checked or planned has a newer event): its run record, its
  event log, its check executions and its compute logs;
* from each one that still holds the latest event of some partition (a variable's latest
  value for a run, its latest check, its latest planned materialisation), deletes
  everything else: its step, engine and log events and its compute logs.

So the UI's partition status, staleness (code and data versions of the latest
materialisations) and lineage, and what ``reprocess`` reads, are the same before and
after. The backend's ``retention`` schedule runs it daily with the ``retention_days``
setting (see ``storage/settings.py``).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as db

from damnit_dagster.plugins.dagster_private import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from damnit_dagster.plugins.event_storage import KeptOpenSqliteEventLogStorage

#: The asset events whose latest per variable and partition are kept.
KEPT_TYPES = (dg.DagsterEventType.ASSET_MATERIALIZATION.value,
              dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
              dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value)
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED]
#: Event ids per DELETE statement: SQLite caps the variables of a statement (32766 by
#: default), and the Dagster run of a big reprocess holds the latest event of every
#: variable and run it processed.
DELETE_CHUNK = 10_000


@dataclass
class Trimmed:
    """What :func:`trim` removed: Dagster runs deleted whole, runs whose logs were
    trimmed (they hold a partition's latest event), and event records deleted."""

    deleted_runs: int = 0
    trimmed_runs: int = 0
    events: int = 0

    def __str__(self) -> str:
        return (f"{self.deleted_runs} old Dagster runs deleted, {self.trimmed_runs} trimmed "
                f"to their latest asset events, {self.events} event records removed")


def trim(instance: dg.DagsterInstance, days: float, *,
         now: datetime.datetime | None = None) -> Trimmed:
    """Trim the Dagster runs that finished more than ``days`` ago (see the module)."""
    storage = instance.event_log_storage
    if not isinstance(storage, KeptOpenSqliteEventLogStorage):
        raise TypeError("retention needs the project's event log storage "
                        "(damnit_dagster.plugins.event_storage in dagster.yaml)")
    now = now or datetime.datetime.now(datetime.UTC)
    cutoff = now - datetime.timedelta(days=days)
    old = instance.get_run_records(filters=dg.RunsFilter(statuses=FINISHED,
                                                         updated_before=cutoff))
    done = Trimmed()
    if not old:
        return done
    table = SqlEventLogStorageTable
    with storage.index_connection() as conn:
        latest = {row[0] for row in conn.execute(
            db.select(db.func.max(table.c.id))
            .where(table.c.dagster_event_type.in_(KEPT_TYPES))
            .group_by(table.c.dagster_event_type, table.c.asset_key, table.c.partition))}
    for record in old:
        run_id = record.dagster_run.run_id
        with storage.index_connection() as conn:
            ids = {row[0] for row in conn.execute(
                db.select(table.c.id).where(table.c.run_id == run_id))}
        keep = ids & latest
        if not keep:
            done.events += len(ids)
            with storage.index_connection() as conn:
                conn.execute(AssetCheckExecutionsTable.delete().where(
                    AssetCheckExecutionsTable.c.run_id == run_id))
            instance.delete_run(run_id)
            storage.remove_run_shard(run_id)
            done.deleted_runs += 1
        else:
            drop = sorted(ids - keep)
            for i in range(0, len(drop), DELETE_CHUNK):
                with storage.index_connection() as conn:
                    done.events += conn.execute(table.delete().where(
                        table.c.id.in_(drop[i:i + DELETE_CHUNK]))).rowcount
            with storage.run_connection(run_id) as conn:   # log lines have no event type
                done.events += conn.execute(table.delete().where(db.or_(
                    table.c.dagster_event_type.is_(None),
                    table.c.dagster_event_type.notin_(KEPT_TYPES)))).rowcount
            done.trimmed_runs += 1
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    if done.events:
        storage.vacuum_index()
    return done
