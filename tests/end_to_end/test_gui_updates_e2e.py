"""DAMNIT's GUI stays live on our backend: a real daemon serving a folder whose
``gui_brokers`` is a real broker (nafka on 127.0.0.1) processes a migration event, and the
folder's topic carries DAMNIT 0.4.0's messages in DAMNIT's order."""
import json
import time

import pytest
from damnit.backend.db import MsgKind

from damnit_dagster.events.inbox import EventInbox
from damnit_dagster.ops.mockdata import make_proposal
from damnit_dagster.plugins.home import inbox_path
from damnit_dagster.storage.database import DamnitDB
from support.backend import running_backend
from support.folders import make_damnit_folder
from support.spec_examples import FIRST_EXAMPLE

PROPOSAL = 4568
pytestmark = pytest.mark.slow


def messages_until_finished(consumer, timeout=90):
    """The topic's messages up to the first ``processing_finished``."""
    messages, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                messages.append(json.loads(record.value))
                if MsgKind(messages[-1]["msg_kind"]) is MsgKind.processing_finished:
                    return messages
    raise AssertionError(f"no processing_finished within {timeout} s: {messages}")


def test_a_migration_event_is_announced_to_damnits_gui(tmp_path, kafka_broker, mock_proposal):
    from kafka import KafkaConsumer

    make_proposal(mock_proposal.root, PROPOSAL, [1], ntrains=20, runs_without_proc=())
    folder = make_damnit_folder(tmp_path / "amore", FIRST_EXAMPLE, proposal=PROPOSAL,
                                gui_brokers=kafka_broker).root
    with DamnitDB(folder) as db:
        db_id = db.db_id
    consumer = KafkaConsumer(f"test.damnit.db-{db_id}", bootstrap_servers=[kafka_broker],
                             auto_offset_reset="earliest")
    with running_backend(folder, tmp_path / "home") as backend:
        backend.wait_for_sensor()
        EventInbox(inbox_path()).add("migration", PROPOSAL, 1)
        messages = messages_until_finished(consumer)
    consumer.close()

    variables = [m["data"] for m in messages if m["msg_kind"] == "variable_set"]
    processing = [(MsgKind(m["msg_kind"]), m["data"]) for m in messages
                  if m["msg_kind"] != "variable_set"]
    assert [(kind, data.get("status")) for kind, data in processing] == [
        (MsgKind.processing_state_set, "PENDING"), (MsgKind.processing_state_set, "RUNNING"),
        (MsgKind.run_values_updated, None), (MsgKind.processing_finished, None)]
    (_, pending), (_, running), (_, values), (_, finished) = processing
    assert pending["processing_id"] == running["processing_id"] == finished["processing_id"]
    assert (running["proposal"], running["run"], running["data"]) == (PROPOSAL, 1, "raw")
    assert running["hostname"] and running["username"]
    assert (values["proposal"], values["run"]) == (PROPOSAL, 1)
    with DamnitDB(folder) as db:
        stored = set(db.run_values(PROPOSAL, 1))
    assert {"xgm_intensity", "pulses"} <= set(values["values"]) <= stored | {"start_time"}
    assert {"xgm_intensity", "pulses"} <= {v["name"] for v in variables}   # the context's load
