"""Bridge from the facility's Kafka topics to the event inbox.

EuXFEL announces new data on Kafka: ``migration_complete`` on ``test.r2d2`` when raw
data reaches the offline cluster, ``run_corrections_complete`` on
``cal.offline-corrections`` when calibrated data is ready (the online cluster uses
``daq_run_complete`` / ``online_correction_complete``). Messages are JSON objects of
which only ``event``, ``proposal`` and ``run`` are read, as DAMNIT does.

The bridge stores each message in the :class:`~.inbox.EventInbox` and only then commits
its Kafka offset, so a crash never loses an event and a replay is stored once (the
record's topic/partition/offset is its ``source_id``).
"""
from __future__ import annotations

import json
import logging
import threading

from damnit_dagster.events.inbox import EventInbox, InvalidEvent

log = logging.getLogger(__name__)

TOPICS = ("test.r2d2", "cal.offline-corrections")

#: Kafka ``event`` names and the inbox kinds they become.
EVENT_KINDS = {
    "migration_complete": "migration",
    "daq_run_complete": "migration",
    "run_corrections_complete": "calibration",
    "online_correction_complete": "calibration",
}


def parse_message(value: bytes) -> tuple[str, object, object] | None:
    """Decode one Kafka message into ``(kind, proposal, run)``.

    Returns None for events of other kinds (ignored, as DAMNIT does); raises
    :class:`InvalidEvent` with the reason for a message that cannot be used.
    """
    try:
        msg = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidEvent(f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise InvalidEvent(f"not a JSON object: {msg!r:.80}")
    missing = [k for k in ("event", "proposal", "run") if k not in msg]
    if missing:
        raise InvalidEvent(f"missing field(s) {', '.join(missing)}")
    kind = EVENT_KINDS.get(msg["event"])
    if kind is None:
        return None
    return kind, msg["proposal"], msg["run"]


def store_record(inbox: EventInbox, record) -> None:
    """Put one consumed Kafka record into the inbox, logging why if it is unusable."""
    source_id = f"{record.topic}:{record.partition}:{record.offset}"
    try:
        parsed = parse_message(record.value)
        if parsed is None:
            log.debug("Ignoring %s: not a run event", source_id)
            return
        event = inbox.add(*parsed, source=f"kafka:{record.topic}", source_id=source_id,
                          received_at=record.timestamp / 1000 if record.timestamp else None)
    except InvalidEvent as e:
        log.warning("Ignoring invalid event %s: %s", source_id, e)
        return
    if event is not None:
        log.debug("Event %s: %s of p%d r%d", source_id, event.kind, event.proposal, event.run)


def run_bridge(brokers: list[str], inbox: EventInbox, *, group_id: str,
               topics=TOPICS, stop: threading.Event | None = None,
               ready: threading.Event | None = None, poll_timeout_ms: int = 500) -> None:
    """Consume ``topics`` from ``brokers`` into ``inbox`` until ``stop`` is set.

    A new consumer group starts at the latest offset: old events are not replayed
    (old runs are for ``reprocess``). ``ready`` is set once partitions are assigned.
    """
    from kafka import KafkaConsumer

    stop = stop or threading.Event()
    consumer = KafkaConsumer(
        *topics, bootstrap_servers=brokers, group_id=group_id,
        enable_auto_commit=False, auto_offset_reset="latest")
    log.info("Listening to %s on %s", ", ".join(topics), ", ".join(brokers))
    try:
        while not stop.is_set():
            batches = consumer.poll(timeout_ms=poll_timeout_ms)
            if ready is not None and not ready.is_set() and consumer.assignment():
                ready.set()
            for records in batches.values():
                for record in records:
                    store_record(inbox, record)
            if batches:
                consumer.commit()
    finally:
        consumer.close()
