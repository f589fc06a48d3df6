"""``runs.sqlite`` in DAMNIT's schema version 4, readable and writable by DAMNIT 0.4.0.

Tables, indexes, trigger and views are created with the same statements as DAMNIT's
migrations 1-4, so ``sqlite_master`` is identical and ``damnit.api``/the GUI neither migrate
nor refuse the file. On top of DAMNIT, a database we create is in WAL mode (readers never
block the writer), and all writes for one run happen in one ``BEGIN IMMEDIATE``
transaction.
Values are encoded as :mod:`.values` says; the schema is :mod:`.schema`.
"""
from __future__ import annotations

import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from damnit_dagster.storage.layout import DB_FILE, make_shared_dir, share
from damnit_dagster.storage.schema import MIGRATIONS, MIN_OPENABLE_VERSION, SCHEMA_VERSION
from damnit_dagster.storage.values import ReducedValue, check_name, encode_row

#: Settings read by the backend (``damnit db-config KEY VALUE``) and their defaults when a
#: key is absent from ``metameta`` (the values DAMNIT 0.4.0 falls back to).
SETTING_DEFAULTS: dict[str, Any] = {
    "concurrent_jobs": 15,
    "slurm_time": "02:00:00",
    "noncluster_cpus": "4",
    "noncluster_mem": "25G",
    "slurm_reservation": "",
    "slurm_partition": "",
}

_RUN_VARIABLE_COLS = ("proposal", "run", "name", "version", "value", "timestamp",
                      "max_diff", "provenance", "summary_method", "summary_type",
                      "attributes")
#: The columns of the ``runs`` view that are not variables (``run_info``'s).
RUN_INFO_COLUMNS = {"proposal", "run", "start_time", "added_at"}

class Metameta(MutableMapping):
    """The ``metameta`` key/value table as a mapping (each write is its own transaction)."""

    def __init__(self, db: DamnitDB):
        self._db = db

    def __getitem__(self, key):
        row = self._db.conn.execute("SELECT value FROM metameta WHERE key=?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def __setitem__(self, key, value):
        with self._db.transaction():
            self._db.conn.execute(
                "INSERT INTO metameta VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, value))

    def __delitem__(self, key):
        with self._db.transaction():
            if self._db.conn.execute("DELETE FROM metameta WHERE key=?", (key,)).rowcount == 0:
                raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter([r[0] for r in self._db.conn.execute("SELECT key FROM metameta")])

    def __len__(self):
        return self._db.conn.execute("SELECT count(*) FROM metameta").fetchone()[0]

    def setdefault(self, key, default=None):
        with self._db.transaction():
            self._db.conn.execute("INSERT OR IGNORE INTO metameta VALUES (?, ?)", (key, default))
            return self[key]

    def to_dict(self) -> dict:
        return dict(self._db.conn.execute("SELECT key, value FROM metameta").fetchall())


class DamnitDB:
    """A DAMNIT ``runs.sqlite``. ``path_or_dir`` is the file or the DAMNIT folder."""

    def __init__(self, path_or_dir, create: bool = False):
        path = Path(path_or_dir)
        if path.is_dir() or not path.suffix:  # a DAMNIT folder
            path = path / DB_FILE
        self.path = path.absolute()
        existed = self.path.is_file()
        if not (existed or create):
            raise FileNotFoundError(f"DAMNIT database does not exist: {self.path}")
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        self._depth = 0
        self.metameta = Metameta(self)
        try:
            share(self.path)
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    @classmethod
    def create(cls, damnit_dir, proposal: int, *, wal: bool = True, **settings) -> DamnitDB:
        """Create (or open) ``damnit_dir/runs.sqlite`` for ``proposal``.

        A new database gets DAMNIT's ``metameta`` defaults (``data_format_version=4``,
        ``db_id``, ``proposal``, ``damnit_python``, ``context_python``,
        ``concurrent_jobs``, ``noncluster_cpus``, ``noncluster_mem``, ``slurm_time``)
        plus ``settings``; an existing one keeps its values and only gains missing keys.
        """
        make_shared_dir(damnit_dir)
        db = cls(damnit_dir, create=True)
        try:
            if wal:
                db.conn.execute("PRAGMA journal_mode=WAL")
            defaults = {
                "proposal": int(proposal),
                "damnit_python": sys.executable,
                "context_python": sys.executable,
                "concurrent_jobs": SETTING_DEFAULTS["concurrent_jobs"],
                "noncluster_cpus": SETTING_DEFAULTS["noncluster_cpus"],
                "noncluster_mem": SETTING_DEFAULTS["noncluster_mem"],
                "slurm_time": SETTING_DEFAULTS["slurm_time"],
            } | settings
            with db.transaction():
                for key, value in defaults.items():
                    db.metameta.setdefault(key, value)
            if int(db.metameta["proposal"]) != int(proposal):
                raise ValueError(f"{db.path} belongs to proposal {db.metameta['proposal']}, "
                                 f"not {proposal}")
        except BaseException:
            db.close()
            raise
        return db

    def _schema_version(self) -> int:
        """-1 for an empty file, 0 for DAMNIT's legacy schema, else ``data_format_version``."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table'"
                             " AND name='metameta'").fetchone():
            return int(self.metameta.get("data_format_version", 0))
        return 0 if self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] else -1

    def _migrate(self):
        """Bring the schema to v4 (DAMNIT's steps) and give the database a ``db_id``."""
        version = self._schema_version()
        if version >= SCHEMA_VERSION and self.metameta.get("db_id") is not None:
            return  # nothing to write: also opens in a read-only folder
        with self.transaction():
            version = self._schema_version()  # again, now that we hold the write lock
            if 0 <= version < MIN_OPENABLE_VERSION:
                raise RuntimeError(f"{self.path} is a legacy v{version} DAMNIT database; "
                                   "migrate it with DAMNIT (damnit migrate v0-to-v1) first")
            for to_version in range(max(version, 0) + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[to_version]:
                    self.conn.execute(statement)
                self.metameta["data_format_version"] = to_version
            self.metameta.setdefault("db_id", secrets.token_hex(20))

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @contextmanager
    def transaction(self):
        """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken up front so
        two writers never deadlock). Nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    # --- settings -----------------------------------------------------------------------
    def setting(self, key: str):
        """A backend setting from ``metameta``, or its DAMNIT default."""
        return self.metameta.get(key, SETTING_DEFAULTS.get(key))

    @property
    def proposal(self) -> int | None:
        value = self.metameta.get("proposal")
        return None if value is None else int(value)

    @property
    def db_id(self) -> str:
        return self.metameta["db_id"]

    # --- runs ---------------------------------------------------------------------------
    def ensure_run(self, proposal: int, run: int, added_at: float | None = None,
                   start_time: float | None = None) -> None:
        """Add the run to ``run_info`` if new; set its ``start_time`` when given."""
        if added_at is None:
            added_at = time.time()
        with self.transaction():
            self.conn.execute(
                "INSERT INTO run_info (proposal, run, start_time, added_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (proposal, run) DO NOTHING",
                (int(proposal), int(run), start_time, added_at))
            if start_time is not None:
                self.conn.execute("UPDATE run_info SET start_time=? WHERE proposal=? AND run=?",
                                  (start_time, int(proposal), int(run)))

    def set_run_values(self, proposal: int, run: int, reduced: dict[str, ReducedValue],
                       provenance: str = "context.py", cleared: Iterable[str] = (), *,
                       start_time: float | None = None, added_at: float | None = None) -> None:
        """Write one run's results in one transaction.

        ``reduced`` maps names to their new rows (errors included); names in ``cleared``
        get a NULL row. ``start_time`` (a key of ``reduced`` or the argument) goes to
        ``run_info`` only, never to ``run_variables``. Views are remade if a name is new
        to them.
        """
        reduced = dict(reduced)
        if "start_time" in reduced:
            st = reduced.pop("start_time").value
            start_time = start_time if st is None else float(st)
        reduced.update({n: ReducedValue.cleared() for n in cleared
                        if n not in reduced and n != "start_time"})
        timestamp = time.time()
        rows = []
        for name, value in reduced.items():
            check_name(name)
            try:
                row = encode_row(value)
            except TypeError as e:
                raise TypeError(f"Variable {name!r} of run {run}: {e}") from None
            rows.append(row | {"proposal": int(proposal), "run": int(run), "name": name,
                               "version": 1, "timestamp": timestamp,
                               "provenance": provenance})
        cols = ", ".join(_RUN_VARIABLE_COLS)
        params = ", ".join(f":{c}" for c in _RUN_VARIABLE_COLS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in _RUN_VARIABLE_COLS)
        with self.transaction():
            self.ensure_run(proposal, run, added_at=added_at, start_time=start_time)
            known = self.view_names()
            self.conn.executemany(
                f"INSERT INTO run_variables ({cols}) VALUES ({params})"
                f" ON CONFLICT (proposal, run, name, version) DO UPDATE SET {updates}", rows)
            if not set(reduced) <= known:
                self.update_views()

    def runs(self, proposal: int) -> list[int]:
        """The run numbers of ``proposal`` in ``run_info``, in order."""
        return [r for (r,) in self.conn.execute(
            "SELECT run FROM run_info WHERE proposal = ? ORDER BY run", (int(proposal),))]

    def runs_stored_since(self, proposal: int, since: float) -> set[int]:
        """Runs of ``proposal`` with a value stored at or after ``since`` (a Unix time)."""
        return {r for (r,) in self.conn.execute(
            "SELECT DISTINCT run FROM run_variables WHERE proposal = ? AND timestamp >= ?",
            (int(proposal), since))}

    def run_values(self, proposal: int, run: int) -> dict[str, sqlite3.Row]:
        """The ``run_variables`` rows of one run, by name."""
        rows = self.conn.execute("SELECT * FROM run_variables WHERE proposal=? AND run=?",
                                 (int(proposal), int(run))).fetchall()
        return {r["name"]: r for r in rows}

    # --- variables ----------------------------------------------------------------------
    def variable_names(self) -> set[str]:
        """Every name with a row in ``run_variables`` or ``variables`` (the view columns)."""
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT name FROM run_variables UNION SELECT name FROM variables")}

    def view_names(self) -> set[str]:
        """The names the ``runs`` view has a column for: what a store checks its names
        against, at a cost that does not grow with the rows stored (unlike
        :meth:`variable_names`, which reads them all)."""
        return {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")} - RUN_INFO_COLUMNS

    def update_views(self) -> None:
        """Recreate the ``runs`` and ``max_diffs`` pivot views with a column per name."""
        names = [n.replace("'", "''") for n in sorted(self.variable_names())]

        def cols(col):
            return "".join(f", max(CASE WHEN name='{n}' THEN {col} END) AS '{n}'" for n in names)

        with self.transaction():
            self.conn.execute("DROP VIEW IF EXISTS runs")
            self.conn.execute(
                "CREATE VIEW runs AS SELECT run_info.proposal, run_info.run, start_time, added_at"
                f"{cols('value')} FROM run_variables INNER JOIN run_info"
                " ON run_variables.proposal = run_info.proposal"
                " AND run_variables.run = run_info.run GROUP BY run_info.run")
            self.conn.execute("DROP VIEW IF EXISTS max_diffs")
            self.conn.execute(
                f"CREATE VIEW max_diffs AS SELECT proposal, run{cols('max_diff')}"
                " FROM run_variables GROUP BY run")

    @classmethod
    def syncer(cls, path) -> Callable[[list[dict]], set[str]]:
        """:meth:`sync_variables` of the database at ``path``, opened for each call (a
        context loader's ``on_new_version``)."""
        def sync(described: list[dict]) -> set[str]:
            with cls(path) as db:
                return db.sync_variables(described)
        return sync

    def sync_variables(self, described: Iterable[dict]) -> set[str]:
        """Store the context file's variables (``ContextFile.describe()`` dicts: ``name``,
        ``title``, ``description``, ``tags``; transient ones are skipped) in ``variables``
        and their tags, in one transaction. Variables no longer in the context file are
        kept, as DAMNIT does. Returns the names whose stored metadata changed."""
        wanted = {}
        for d in described:
            if d.get("transient"):
                continue
            check_name(d["name"])
            tags = d.get("tags") or ()
            wanted[d["name"]] = (d.get("title"), d.get("description"),
                                 sorted({tags} if isinstance(tags, str) else set(tags)))
        changed = set()
        with self.transaction():
            stored = {r["name"]: (r["title"], r["description"])
                      for r in self.conn.execute(
                          "SELECT name, title, description FROM variables WHERE type IS NULL")}
            known = self.view_names()
            for name, (title, description, tags) in wanted.items():
                if stored.get(name) != (title, description):
                    changed.add(name)
                    self.conn.execute(
                        "INSERT INTO variables VALUES (?, NULL, ?, ?, NULL) ON CONFLICT (name)"
                        " DO UPDATE SET type=NULL, title=excluded.title,"
                        " description=excluded.description, attributes=excluded.attributes",
                        (name, title, description))
                if self.get_variable_tags(name) != tags:
                    changed.add(name)
                    self._set_tags(name, tags)
            if not set(wanted) <= known:
                self.update_views()
        return changed

    def get_variable_tags(self, name: str) -> list[str]:
        return sorted(r[0] for r in self.conn.execute(
            "SELECT t.name FROM tags t JOIN variable_tags vt ON t.id = vt.tag_id"
            " WHERE vt.variable_name = ?", (name,)))

    def _set_tags(self, name: str, tags: list[str]) -> None:
        old = set(self.get_variable_tags(name))
        for tag in set(tags) - old:
            self.conn.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (tag,))
            self.conn.execute(
                "INSERT OR IGNORE INTO variable_tags (variable_name, tag_id)"
                " SELECT ?, id FROM tags WHERE name = ?", (name, tag))
        for tag in old - set(tags):  # the trigger removes tags nobody uses any more
            self.conn.execute(
                "DELETE FROM variable_tags WHERE variable_name = ?"
                " AND tag_id = (SELECT id FROM tags WHERE name = ?)", (name, tag))
