"""Dagster's SQLite run and schedule storages, with pooled connections and schema checks
answered once.

Dagster's :class:`SqliteRunStorage` (``history/runs.db``) and
:class:`SqliteScheduleStorage` (``schedules/schedules.db``) create an SQLAlchemy engine
and open a new SQLite connection for every query, and many queries first ask SQLite's
schema whether an optional table, column or index exists (``get_run_records`` asks for
the run-stats columns each time; the sensor daemon's every pass asks for the instigators
table). While a long backfill runs, the daemon's backfill loop makes dozens of such
queries per pass, and a woken sensor loop passes every few tens of milliseconds: the
connections and schema reads are what a live event's run waits behind (GIL and CPU).

The classes here are the same storages (same files, schema and queries, so the webserver,
the daemon and ``dagster`` CLI read them as before) with:

* one SQLAlchemy ``QueuePool`` per database and process: connections are reused, never
  shared by two transactions at once (a nested or concurrent ``connect`` gets another
  connection, as with Dagster's own), and a process forked from this one makes its own;
* schema checks that found the table, column or index remembered for the process's life
  (a schema only gains them: migrations add, nothing drops).

Use them in ``dagster.yaml``::

    run_storage:
      module: damnit_dagster.plugins.pooled_storage
      class: PooledSqliteRunStorage
    schedule_storage:
      module: damnit_dagster.plugins.pooled_storage
      class: PooledSqliteScheduleStorage

Without ``config.base_dir`` they use ``$DAGSTER_HOME/history/`` and
``$DAGSTER_HOME/schedules/`` of the instance they belong to, where Dagster's defaults keep
them.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from damnit_dagster.plugins.dagster_private import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    ConfigurableClassData,
    SqliteRunStorage,
    SqliteScheduleStorage,
    create_engine,
)
from damnit_dagster.plugins.process_engines import BaseDirConfigurable, ProcessEngines

#: Connections a pool keeps open (more are opened when needed, and closed after use).
POOL_SIZE = 4


def _once_found(check):
    """A schema check (``has_*``) that, once true, stays true in this process."""
    @functools.wraps(check)
    def remembered(self, *args):
        key = (check.__name__, *(a for a in args if isinstance(a, str)))
        if key in self._schema_found:
            return True
        found = check(self, *args)
        if found:
            self._schema_found.add(key)
        return found
    return remembered


class _Pooled(BaseDirConfigurable):
    """The pooled connections and remembered schema checks of a Dagster SQLite storage
    (``_stock``), in ``_subdir`` of the instance's folder unless ``base_dir`` is given."""

    _stock: type
    _subdir: str

    def __init__(self, base_dir: str | None = None,
                 inst_data: ConfigurableClassData | None = None):
        self._base_dir = base_dir
        self._engines = ProcessEngines()   # one pooled engine, made again after a fork
        self._schema_found: set[tuple] = set()
        super().__init__("", inst_data)   # the database is opened with the instance

    def register_instance(self, instance) -> None:
        if not self._conn_string:   # Dagster's from_local creates or checks the database
            base_dir = self._base_dir or os.path.join(instance.root_directory, self._subdir)
            self._conn_string = self._stock.from_local(base_dir)._conn_string
        super().register_instance(instance)

    def _engine(self) -> Engine:
        engine = self._engines.get(self._conn_string)
        if engine is None:
            engine = create_engine(
                self._conn_string, poolclass=QueuePool, pool_size=POOL_SIZE, max_overflow=-1,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                              "check_same_thread": False})
            self._engines.add(self._conn_string, engine)
        return engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._engine().connect() as conn:
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self._engines.close_all()
        super().dispose()


class PooledSqliteRunStorage(_Pooled, SqliteRunStorage):
    """:class:`SqliteRunStorage` with pooled connections and remembered schema checks."""

    _stock, _subdir = SqliteRunStorage, "history"

    has_run_stats_index_cols = _once_found(SqliteRunStorage.has_run_stats_index_cols)
    has_bulk_actions_selector_cols = _once_found(SqliteRunStorage.has_bulk_actions_selector_cols)
    has_backfill_id_column = _once_found(SqliteRunStorage.has_backfill_id_column)
    has_bulk_action_job_name_column = _once_found(
        SqliteRunStorage.has_bulk_action_job_name_column)
    has_backfill_tags_table = _once_found(SqliteRunStorage.has_backfill_tags_table)
    has_built_index = _once_found(SqliteRunStorage.has_built_index)


class PooledSqliteScheduleStorage(_Pooled, SqliteScheduleStorage):
    """:class:`SqliteScheduleStorage` with pooled connections and remembered schema checks."""

    _stock, _subdir = SqliteScheduleStorage, "schedules"

    has_instigators_table = _once_found(SqliteScheduleStorage.has_instigators_table)
    _has_instigators_table = _once_found(SqliteScheduleStorage._has_instigators_table)
    _has_asset_daemon_asset_evaluations_table = _once_found(
        SqliteScheduleStorage._has_asset_daemon_asset_evaluations_table)
    has_secondary_index_table = _once_found(SqliteScheduleStorage.has_secondary_index_table)
    has_built_index = _once_found(SqliteScheduleStorage.has_built_index)
