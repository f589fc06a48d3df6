"""Dagster's SQLite event log, with connections kept open instead of one per statement.

Dagster's :class:`SqliteEventLogStorage` creates an SQLAlchemy engine and a new SQLite
connection for every transaction and closes it afterwards, up to four times per event
(the run's shard, the ``index`` shard twice, a check or status mirror). Closing the last
connection to a WAL database checkpoints the WAL into the database and deletes it, with
fsyncs, which made a reprocessing run spend most of its time storing events, more than
computing and storing the variables themselves (benchmarks/results.md).

:class:`KeptOpenSqliteEventLogStorage` is the same storage (same files, schema and
queries, so the webserver, the daemon and ``dagster`` CLI, which open it as the instance's
``dagster.yaml`` says, read it as before; Dagster's stock storage cannot expand the
compressed records) with:

* one open connection per database file, reused while the process lives (a small LRU
  of run shards plus the index shard, so a webserver browsing many runs keeps few files
  open). Access stays serialised by the storage's own lock, as in Dagster;
* every event stored compressed (:mod:`.event_compression`; the storage's connections
  read them back as Dagster's JSON), about a tenth of its JSON;
* ``PRAGMA synchronous=NORMAL``: in WAL mode a commit no longer waits for an fsync. The
  database cannot be corrupted by it; an OS crash or power loss may lose the last
  events before it (an application crash loses nothing) — a fair trade for a log;
* a new run's database file copied from an empty one that Dagster's own ``_initdb``
  made once in small pages (``.empty-run-shard-dagster-<versions>-page-<size>.sqlite`` in
  the same folder, named for the Dagster and SQLAlchemy versions and the page size, and
  made again if missing or damaged), instead of
  creating its tables and stamping its alembic revision for every run; a database that has
  an alembic revision is used as it is, as Dagster does, without loading alembic's scripts;
* schema checks answered once per process (Dagster asks before every asset event
  whether the tables and columns of optional features exist);
* run-log watchers (the UI's live run view) woken by writes to the ``-wal`` file too,
  since with an open connection new events land there until the next checkpoint;
* the events a thread stores inside :meth:`~KeptOpenSqliteEventLogStorage.stored_together`
  (the step's scope around one run's materialisations and checks) written at its end, in
  one transaction per database file, each event serialised and compressed once
  (:func:`store_event_batch`, :mod:`.event_rows`): all of them or, if the scope fails,
  none. Dagster's own batches take the same path: the storage sets
  ``DAGSTER_EVENT_BATCH_SIZE`` (unless set already) in the processes that use it, so a
  new run's planned materialisations and checks (one per asset) are written in one
  transaction per database file instead of two or three each;
* one "planned materialization" event per asset for a run over a *range* of partitions
  (a reprocess), instead of one per asset and partition: 2,500 fewer events to store
  before 100 runs of 25 variables start. Dagster's own switch for this
  (``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``) would also change single-partition
  runs, whose per-partition event is what marks a run's partitions "in progress" (and
  "failed" if the Dagster run fails) in the UI; those are stored exactly as before. For
  ranged runs the UI shows neither mark (the ``reprocess`` command shows progress and
  failures itself).

Use it in ``dagster.yaml``::

    event_log_storage:
      module: damnit_dagster.plugins.event_storage
      class: KeptOpenSqliteEventLogStorage

Without ``config.base_dir`` it uses ``$DAGSTER_HOME/history/runs/`` of the instance it
belongs to, exactly where the default storage keeps the event logs.
"""
from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext, suppress
from pathlib import Path

import sqlalchemy as db
from dagster import EventLogEntry
from dagster import __version__ as dagster_version
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

from damnit_dagster.plugins.dagster_private import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    ConfigurableClassData,
    SqlEventLogStorageTable,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
    create_engine,
)
from damnit_dagster.plugins.event_compression import expand_row, stored_row
from damnit_dagster.plugins.event_rows import batchable, write_index_shard, write_run_shard
from damnit_dagster.plugins.process_engines import BaseDirConfigurable, ProcessEngines

#: Run shards kept open per process besides the index shard.
OPEN_RUN_SHARDS = 8
#: The SQLite page size of a new index shard: it holds every asset event, and larger pages
#: waste less of each page on a row that does not fit the rest of it. A database keeps
#: the page size it was created with (in WAL mode even VACUUM keeps it), so an existing
#: index stays as it is (benchmarks/results.md: bytes per value).
INDEX_PAGE_SIZE = 16384
#: The SQLite page size of a new run shard (its template): each table and index of an
#: empty shard takes a page, a cost of every Dagster run (one per live run), and the
#: compressed events are small enough for small pages.
RUN_SHARD_PAGE_SIZE = 1024
#: The write-ahead log's checkpoint threshold in bytes: SQLite's default (its default
#: number of pages of its default size) whatever a database's page size.
WAL_AUTOCHECKPOINT_BYTES = 1000 * 4096
#: The name of a new run shard's template in the event log's folder, then its versions.
TEMPLATE_PREFIX = ".empty-run-shard-dagster-"


def _stamped(path: str, check: bool = False) -> bool:
    """Whether the database at ``path`` has an alembic revision (all Dagster's ``_initdb``
    asks of an existing database), and with ``check`` passes SQLite's quick check."""
    try:
        with closing(sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=rw", uri=True,
                                     timeout=SQLITE_BUSY_TIMEOUT_SECONDS)) as conn:
            if check and conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
                return False
            return conn.execute("SELECT version_num FROM alembic_version").fetchone() is not None
    except sqlite3.DatabaseError:
        return False


def _set_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.row_factory = expand_row
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
    page_size = dbapi_connection.execute("PRAGMA page_size").fetchone()[0]
    dbapi_connection.execute(
        f"PRAGMA wal_autocheckpoint={max(1, WAL_AUTOCHECKPOINT_BYTES // page_size)}")


def _page_size_setter(size: int):
    """A connect hook setting the page size of a database still empty (one with tables
    ignores it)."""
    def set_page_size(dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA page_size={size}")
    return set_page_size


#: Dagster's switch for writing batches of events (a new run's planned materialisations
#: and checks, one per asset) through ``store_event_batch``, and the batch size set.
EVENT_BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = 1000


class KeptOpenSqliteEventLogStorage(BaseDirConfigurable, SqliteEventLogStorage):
    """:class:`SqliteEventLogStorage` reusing one open connection per database file."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        self._engines = ProcessEngines()
        self._tables_seen: set[str] = set()
        self._deferred = threading.local()
        if base_dir is not None:
            super().__init__(base_dir, inst_data)

    def register_instance(self, instance) -> None:
        if not hasattr(self, "_base_dir"):   # no base_dir configured: the instance's own
            super().__init__(os.path.join(instance.root_directory, "history", "runs", ""),
                             self._inst_data)
        # a new run's planned events reach store_event_batch together, not one by one
        os.environ.setdefault(EVENT_BATCH_SIZE_VARIABLE, str(EVENT_BATCH_SIZE))
        super().register_instance(instance)

    def _engine(self, shard: str) -> Engine:
        """The open engine of ``shard`` (creating the database on first use)."""
        engine = self._engines.get(shard)
        if engine is not None:
            return engine
        if shard not in self._initialized_dbs:
            self._init_shard(shard)
            self._initialized_dbs.add(shard)
        engine = create_engine(self.conn_string_for_shard(shard), poolclass=StaticPool,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                                             "check_same_thread": False})
        db.event.listen(engine, "connect", _set_pragmas)
        self._engines.add(shard, engine)
        runs_open = [s for s in self._engines.keys() if s != INDEX_SHARD_NAME]
        for old in runs_open[:-OPEN_RUN_SHARDS]:
            self._engines.close(old)
        return engine

    def _init_shard(self, shard: str) -> None:
        """Make ``shard``'s database ready: a new run's is a copy of the template, one that
        is stamped is taken as Dagster takes it, anything else goes through ``_initdb``."""
        path = self.path_for_shard(shard)
        if shard != INDEX_SHARD_NAME and not os.path.exists(path) and self._copy_template(path):
            return
        if _stamped(path):
            return
        self._initdb_at(self.conn_string_for_shard(shard))

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """Dagster's ``_initdb``; a new index shard's tables are created in pages of
        :data:`INDEX_PAGE_SIZE` (made by Dagster's ``__init__``, or by ``_init_shard``)."""
        if for_index_shard or Path(engine.url.database).name == f"{INDEX_SHARD_NAME}.db":
            db.event.listen(engine, "connect", _page_size_setter(INDEX_PAGE_SIZE))
        super()._initdb(engine, for_index_shard)

    def _initdb_at(self, conn_string: str, page_size: int | None = None) -> None:
        """Dagster's own initialisation of the database at ``conn_string`` (a new one in
        pages of ``page_size``, if given)."""
        engine = create_engine(conn_string, poolclass=NullPool,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        if page_size is not None:
            db.event.listen(engine, "connect", _page_size_setter(page_size))
        self._initdb(engine)
        engine.dispose()

    def _copy_template(self, path: str) -> bool:
        """Create the run shard at ``path`` as a copy of the template; False if it cannot
        or if another process created the shard first."""
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            shutil.copyfile(self._template(), tmp)
            os.link(tmp, path)   # unlike a rename, never replaces a shard made meanwhile
        except OSError:
            return False
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        return True

    def _template(self) -> str:
        """The path of an empty run shard made by Dagster's ``_initdb`` in pages of
        :data:`RUN_SHARD_PAGE_SIZE`, made first if it is missing or damaged. Its name
        carries the versions of Dagster and SQLAlchemy, which define the schema, and the
        page size, so a change makes a new one (and deletes the old)."""
        path = os.path.join(self._base_dir, f"{TEMPLATE_PREFIX}{dagster_version}-"
                                            f"sqlalchemy-{db.__version__}-"
                                            f"page-{RUN_SHARD_PAGE_SIZE}.sqlite")
        if _stamped(path, check=True):
            return path
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            self._initdb_at("sqlite:///" + os.path.abspath(tmp), RUN_SHARD_PAGE_SIZE)
            os.replace(tmp, path)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        for old in glob.glob(os.path.join(glob.escape(self._base_dir), TEMPLATE_PREFIX + "*")):
            if old != path and old.endswith(".sqlite"):
                with suppress(FileNotFoundError):
                    os.unlink(old)
        return path

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            with self._engine(shard).connect() as conn:
                with conn.begin():
                    yield conn

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        return True   # see store_event: only ranged runs keep the subset form

    def prepare_insert_event(self, event: EventLogEntry):
        """Dagster's insert of one event (its own ``store_event``), the event compressed."""
        return SqlEventLogStorageTable.insert().values(**stored_row(self._event_to_row(event)))

    def store_event(self, event: EventLogEntry) -> None:
        deferred = getattr(self._deferred, "events", None)
        if deferred is not None:
            deferred.append(event)
        else:
            super().store_event(_per_partition_if_single(event))

    @contextmanager
    def stored_together(self) -> Iterator[None]:
        """Events this thread stores inside are written when it ends, together (in one
        transaction per database file); none of them if it raises (or, in a generator,
        is closed)."""
        if getattr(self._deferred, "events", None) is not None:
            yield   # nested: the outer scope writes them
            return
        self._deferred.events = events = []
        try:
            yield
        finally:
            self._deferred.events = None
        if events:
            self.store_event_batch(events)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store ``events`` in one transaction per database file (the run's, then the
        index), if every one is :func:`~.event_rows.batchable`; else one at a time."""
        events = [_per_partition_if_single(e) for e in events]
        if not all(batchable(e) for e in events):
            for event in events:
                super().store_event(event)
            return
        rows = [self._event_to_row(e) for e in events]
        stored = [stored_row(row) for row in rows]
        for run_id in dict.fromkeys(e.run_id for e in events):
            with self._connect(run_id) as conn:
                write_run_shard(conn, [r for e, r in zip(events, stored) if e.run_id == run_id])
        with self._connect(INDEX_SHARD_NAME) as conn:
            write_index_shard(conn, self, events, rows, stored)

    def has_table(self, table_name: str) -> bool:
        if table_name in self._tables_seen:
            return True
        found = super().has_table(table_name)
        if found:
            self._tables_seen.add(table_name)
        return found

    def _has_asset_key_index_cols_on_connection(self, conn: Connection) -> bool:
        if "asset_keys.last_materialization_timestamp" not in self._tables_seen:
            if not super()._has_asset_key_index_cols_on_connection(conn):
                return False
            self._tables_seen.add("asset_keys.last_materialization_timestamp")
        return True

    def watch(self, run_id, cursor, callback) -> None:
        if not self._obs:
            from watchdog.observers import Observer

            self._obs = Observer()
            self._obs.start()
        watchdog = _WalAwareWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog, self._obs.schedule(watchdog, self._base_dir, recursive=True))

    def remove_run_shard(self, run_id: str) -> None:
        """Close and delete the database file of a deleted run (``instance.delete_run``
        empties it but leaves the file)."""
        with self._db_lock:
            self._engines.close(run_id)
            path = self.path_for_shard(run_id)
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(path + suffix)
                except FileNotFoundError:
                    pass
            self._initialized_dbs.discard(run_id)

    def vacuum_index(self) -> None:
        """Give the space of deleted records in the index shard back to the disk (and
        empty the ``-wal`` file, where VACUUM leaves a copy of the whole shard)."""
        with self._db_lock:
            with self._engine(INDEX_SHARD_NAME).connect() as conn:
                conn.exec_driver_sql("VACUUM")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def _close_all(self) -> None:
        with self._db_lock:
            self._engines.close_all()

    def wipe(self) -> None:
        self._close_all()   # the files are deleted: no connection may stay on them
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()


def stored_together(instance) -> AbstractContextManager:
    """``instance``'s :meth:`KeptOpenSqliteEventLogStorage.stored_together`, or a scope
    that changes nothing for another event log storage."""
    storage = instance.event_log_storage
    if isinstance(storage, KeptOpenSqliteEventLogStorage):
        return storage.stored_together()
    return nullcontext()


def _per_partition_if_single(event: EventLogEntry) -> EventLogEntry:
    """A planned materialization of a one-partition subset, as Dagster writes it when the
    subset form is off (``partition=<key>``), which the UI's in-progress marks read."""
    dagster_event = event.dagster_event
    if dagster_event is None or not dagster_event.is_asset_materialization_planned:
        return event
    planned = dagster_event.event_specific_data
    subset = planned.partitions_subset
    if subset is None or len(subset) != 1:
        return event
    single = planned._replace(partition=next(iter(subset.get_partition_keys())),
                              partitions_subset=None)
    return event._replace(dagster_event=dagster_event._replace(event_specific_data=single))


class _WalAwareWatchdog(SqliteEventLogStorageWatchdog):
    """Calls back on writes to a run's database or to its write-ahead log."""

    def __init__(self, storage, run_id, callback, cursor):
        super().__init__(storage, run_id, callback, cursor)
        self._patterns = [self._log_path, self._log_path + "-wal"]

    def on_modified(self, event) -> None:
        self._process_log()
