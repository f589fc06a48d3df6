"""The event inbox: a durable queue of "run data arrived" events, one SQLite file.

Every source of events writes here first — the Kafka bridge (:mod:`.kafka`), the
``damnit-dagster event`` command, the demo — and the sensor reads from here. Because an
event is stored before anyone acts on it, an event is never lost: a crash between
receiving and processing leaves it in the inbox for the next sensor tick.

An event is *valid* when it names a known kind, an integer proposal and an integer run.
Replays of the same Kafka record (same ``source_id``) are stored once.

Storing an event rings the inbox's doorbell (:func:`wake_address`), which wakes the
backend's daemon at once instead of at its next poll; no backend listening costs nothing.
"""
from __future__ import annotations

import hashlib
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

#: Event kinds and the processing they trigger, as DAMNIT's listener maps them.
KINDS = {
    "migration": "raw",      # raw data migrated to the offline cluster
    "calibration": "proc",   # calibration (corrected data) finished
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    proposal INTEGER NOT NULL,
    run INTEGER NOT NULL,
    received_at REAL NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS events_proposal ON events (proposal, id);
"""


@dataclass(frozen=True)
class RunEvent:
    """One stored event: run ``run`` of ``proposal`` has new ``kind`` data."""

    id: int
    kind: str
    proposal: int
    run: int
    received_at: float
    source: str

    @property
    def data(self) -> str:
        """The data the event makes available: ``"raw"`` or ``"proc"``."""
        return KINDS[self.kind]


class InvalidEvent(ValueError):
    """An event that cannot be processed; the message says why."""


def validate(kind, proposal, run) -> tuple[str, int, int]:
    """Check and normalise the fields of an event; raise :class:`InvalidEvent`."""
    if kind not in KINDS:
        raise InvalidEvent(f"unknown event kind {kind!r} (expected one of {sorted(KINDS)})")
    values = []
    for field, value in (("proposal", proposal), ("run", run)):
        if isinstance(value, bool):
            raise InvalidEvent(f"{field} must be an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidEvent(f"{field} must be an integer, got {value!r}") from None
        if number <= 0:
            raise InvalidEvent(f"{field} must be positive, got {value!r}")
        values.append(number)
    return kind, values[0], values[1]


def wake_address(inbox_path) -> str:
    """The name (Linux abstract Unix socket) on which the backend of the inbox at
    ``inbox_path`` waits for new events; short whatever the path's length."""
    digest = hashlib.sha256(str(Path(inbox_path).absolute()).encode()).hexdigest()[:24]
    return f"damnit-dagster-inbox-{digest}"


def ring(address: str, what: bytes = b"!") -> None:
    """Tell whoever listens at ``address`` that an event was stored, or something else
    that ``what`` says (``damnit_dagster.plugins.wakeup.BACKFILL_RING``); never blocks."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.sendto(what, "\0" + address)
        except OSError:  # nobody listens, or a ring is already pending
            pass


class EventInbox:
    """The inbox file at ``path`` (created on first use)."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def add(self, kind, proposal, run, *, source="cli", source_id=None,
            received_at=None) -> RunEvent | None:
        """Store one event; returns it, or None if ``source_id`` was seen before.

        Raises :class:`InvalidEvent` for bad fields.
        """
        kind, proposal, run = validate(kind, proposal, run)
        received_at = time.time() if received_at is None else received_at
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (kind, proposal, run, received_at, source, source_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (kind, proposal, run, received_at, source, source_id))
            if cur.rowcount == 0:
                return None
            event = RunEvent(cur.lastrowid, kind, proposal, run, received_at, source)
        ring(wake_address(self.path))
        return event

    def after(self, event_id: int, proposal: int, limit: int = 1000) -> list[RunEvent]:
        """Events of ``proposal`` stored after ``event_id``, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, kind, proposal, run, received_at, source FROM events"
                " WHERE proposal = ? AND id > ? ORDER BY id LIMIT ?",
                (proposal, event_id, limit)).fetchall()
        return [RunEvent(*row) for row in rows]

    def by_ids(self, ids) -> list[RunEvent]:
        """The stored events with these ids, oldest first."""
        ids = list(ids)
        if not ids:
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, kind, proposal, run, received_at, source FROM events"
                f" WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id", ids).fetchall()
        return [RunEvent(*row) for row in rows]

    def received_before(self, proposal: int, when: float) -> tuple[int, int]:
        """``(count, last id)`` of the events of ``proposal`` received before ``when``."""
        with self._connect() as conn:
            count, last = conn.execute(
                "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM events"
                " WHERE proposal = ? AND received_at < ?", (proposal, when)).fetchone()
        return count, last

    def last_id(self) -> int:
        """The id of the newest event (0 when empty)."""
        with self._connect() as conn:
            (value,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return value
