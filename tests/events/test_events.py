"""Event sources: the embedded inbox and the Kafka bridge against a real broker."""
import json
import threading
import time

import pytest

from damnit_dagster.events.inbox import EventInbox, InvalidEvent
from damnit_dagster.events.kafka import parse_message, run_bridge
from support.kafka_broker import send as _send


def test_inbox_stores_events_in_order(tmp_path):
    inbox = EventInbox(tmp_path / "events.sqlite")
    first = inbox.add("migration", "001234", "0007")
    inbox.add("migration", 9999, 1)              # another proposal
    inbox.add("calibration", 1234, 7)
    events = inbox.after(0, proposal=1234)
    assert [(e.kind, e.proposal, e.run, e.data) for e in events] == [
        ("migration", 1234, 7, "raw"), ("calibration", 1234, 7, "proc")]
    assert inbox.after(first.id, proposal=1234)[0].kind == "calibration"
    assert inbox.last_id() == 3


def test_inbox_stores_a_replayed_record_once(tmp_path):
    inbox = EventInbox(tmp_path / "events.sqlite")
    assert inbox.add("migration", 1234, 1, source_id="test.r2d2:0:5") is not None
    assert inbox.add("migration", 1234, 1, source_id="test.r2d2:0:5") is None
    assert len(inbox.after(0, 1234)) == 1


@pytest.mark.parametrize("kind, proposal, run, reason", [
    ("exploded", 1234, 1, "unknown event kind 'exploded'"),
    ("migration", "p1234", 1, "proposal must be an integer, got 'p1234'"),
    ("migration", 1234, "1.5", "run must be an integer, got '1.5'"),
    ("migration", 1234, None, "run must be an integer, got None"),
    ("migration", 1234, True, "run must be an integer, got True"),
    ("migration", 1234, -3, "run must be positive, got -3"),
])
def test_inbox_rejects_invalid_events_with_a_reason(tmp_path, kind, proposal, run, reason):
    inbox = EventInbox(tmp_path / "events.sqlite")
    with pytest.raises(InvalidEvent, match=reason.replace("(", r"\(").replace(")", r"\)")):
        inbox.add(kind, proposal, run)
    assert inbox.last_id() == 0


@pytest.mark.parametrize("value, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"event": "migration_complete", "run": 3}).encode(), "missing field(s) proposal"),
])
def test_bad_kafka_messages_give_a_reason(value, reason):
    with pytest.raises(InvalidEvent, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_message(value)


def test_kafka_messages_map_to_kinds():
    msg = {"event": "run_corrections_complete", "proposal": "001234", "run": "0012",
           "instrument": "MID", "cycle": "202501"}
    assert parse_message(json.dumps(msg).encode()) == ("calibration", "001234", "0012")
    assert parse_message(json.dumps({**msg, "event": "something_else"}).encode()) is None


def test_kafka_bridge_stores_migration_and_calibration_events(tmp_path, kafka_broker):
    inbox = EventInbox(tmp_path / "events.sqlite")
    # Create the topics before the consumer joins, as the facility's topics exist.
    _send(kafka_broker, [("test.r2d2", {"event": "warmup", "proposal": 1, "run": 1}),
                         ("cal.offline-corrections", {"event": "warmup", "proposal": 1, "run": 1})])
    stop, ready = threading.Event(), threading.Event()
    bridge = threading.Thread(target=run_bridge, args=([kafka_broker], inbox),
                              kwargs=dict(group_id="test-bridge", stop=stop, ready=ready))
    bridge.start()
    try:
        assert ready.wait(30), "consumer never got its partitions"
        _send(kafka_broker, [
            ("test.r2d2", {"event": "migration_complete", "proposal": "001234", "run": "0005"}),
            ("test.r2d2", b"this is not json"),
            ("test.r2d2", {"event": "migration_complete", "proposal": "001234", "run": "five"}),
            ("cal.offline-corrections",
             {"event": "run_corrections_complete", "proposal": 1234, "run": 5}),
            ("test.r2d2", {"event": "migration_complete", "proposal": 4321, "run": 1}),
        ])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and inbox.last_id() < 3:
            time.sleep(0.1)
    finally:
        stop.set()
        bridge.join(30)
    events = inbox.after(0, proposal=1234)
    assert sorted((e.kind, e.run) for e in events) == [("calibration", 5), ("migration", 5)]
    assert all(e.source.startswith("kafka:") for e in events)
    assert [e.proposal for e in inbox.after(0, proposal=4321)] == [4321]
