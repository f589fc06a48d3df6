"""DAMNIT's GUI update messages: where they go, what they say (read with DAMNIT 0.4.0's own
``MsgKind``), and that an unreachable broker never holds up or changes processing."""
import logging
import time

import pytest
from damnit.backend.db import MsgKind

from damnit_dagster.events.gui_updates import CLIENT_ID, FACILITY_BROKER, GuiUpdates, brokers_for
from damnit_dagster.execution.process_run import evaluate_and_store
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.settings import SettingError, parse_setting
from support.backend import free_port
from support.gui_messages import consume
from support.reprocess_context import CONTEXT


def test_the_brokers_follow_the_setting_then_damnits_variable(tmp_path):
    assert brokers_for(tmp_path, {"gui_brokers": "a:1,b:2"}, {"AMORE_BROKER": "c:3"}) == [
        "a:1", "b:2"]
    assert brokers_for(tmp_path, {}, {"AMORE_BROKER": "c:3"}) == ["c:3"]
    assert brokers_for(tmp_path, {}, {"AMORE_BROKER": "none"}) == []
    assert brokers_for(tmp_path, {"gui_brokers": "none"}, {"AMORE_BROKER": "c:3"}) == []
    assert brokers_for(tmp_path, {}, {}) == []
    assert brokers_for("/gpfs/exfel/exp/MID/202401/p001234/usr/Shared/amore", {}, {}) == [
        FACILITY_BROKER]
    assert parse_setting("gui-brokers", "NONE") == "none"
    with pytest.raises(SettingError, match="host:port"):
        parse_setting("gui_brokers", "exflwgs06")


def test_messages_are_damnits(kafka_broker):
    gui = GuiUpdates("0123abcd", [kafka_broker])
    gui.processing_state("p-1", 1234, 7, "raw", "RUNNING")
    gui.run_values_updated(1234, 7, ["xgm", "start_time"])
    gui.variables_set({"xgm": {"title": "XGM", "description": None, "tags": ["beam"]}})
    gui.processing_finished("p-1")
    assert gui.flush(timeout=10, connect=True)

    messages = consume(kafka_broker, "0123abcd", MsgKind.processing_finished)
    assert [MsgKind(m["msg_kind"]) for m in messages] == [
        MsgKind.processing_state_set, MsgKind.run_values_updated, MsgKind.variable_set,
        MsgKind.processing_finished]
    running, values, variable, finished = (m["data"] for m in messages)
    assert running["processing_id"] == "p-1" and running["status"] == "RUNNING"
    assert (running["proposal"], running["run"], running["data"]) == (1234, 7, "raw")
    assert running["hostname"] and running["username"]
    assert (running["slurm_cluster"], running["slurm_job_id"]) == (None, "")
    assert values == {"run": 7, "proposal": 1234, "values": {"xgm": None, "start_time": None}}
    assert variable == {"name": "xgm", "title": "XGM", "description": None, "tags": ["beam"],
                        "attributes": None, "type": None}
    assert finished == {"processing_id": "p-1"}


def test_a_dead_broker_never_blocks_and_is_logged_once(caplog):
    caplog.set_level(logging.WARNING)
    gui = GuiUpdates("dead", ["127.0.0.1:1"])
    t0 = time.perf_counter()
    for i in range(3000):
        gui.processing_finished(f"p-{i}")
    assert gui.flush(timeout=1.0) is False
    assert time.perf_counter() - t0 < 0.5
    time.sleep(5)   # several connection attempts
    ours = [r.getMessage() for r in caplog.records if "GUI updates: cannot reach" in r.getMessage()]
    assert len(ours) == 1 and "127.0.0.1:1" in ours[0]
    # kafka-python's own per-attempt errors from our sender are not shown (clients of other
    # tests, whose brokers are gone, may still log theirs in this process)
    assert not [r for r in caplog.records
                if r.name.startswith("kafka") and r.threadName.startswith(CLIENT_ID)]


def stored(folder, run):
    with DamnitDB(folder) as db:
        return {name: (row["value"], row["summary_type"])
                for name, row in db.run_values(1234, run).items()}


def test_runs_are_processed_the_same_with_a_dead_broker(damnit_folder, mock_proposal, caplog):
    caplog.set_level(logging.WARNING)
    names, closed = ["run_no", "odd_only"], f"127.0.0.1:{free_port()}"
    plain = damnit_folder(CONTEXT.read_text(), name="plain", gui_brokers="none").root
    dead = damnit_folder(CONTEXT.read_text(), name="dead", gui_brokers=closed).root
    timings = {plain: [], dead: []}
    for _ in range(3):      # interleaved, the fastest of each: the machine's load varies
        for folder in (plain, dead):
            t0 = time.perf_counter()
            outcomes = [evaluate_and_store(folder, 1234, run, folder / "context.py", names,
                                           "raw") for run in (1, 2)]
            timings[folder].append(time.perf_counter() - t0)
            assert [o.error for o in outcomes] == [None, None]
    assert stored(dead, 1) == stored(plain, 1) and stored(dead, 2) == stored(plain, 2)
    assert stored(dead, 1)["odd_only"][0] == 1
    assert min(timings[dead]) < min(timings[plain]) + 0.3, timings
    deadline = time.monotonic() + 10    # the connection attempt gives up in the background
    while not (said := [r.getMessage() for r in caplog.records if closed in r.getMessage()]):
        assert time.monotonic() < deadline, "the dead broker was never reported"
        time.sleep(0.1)
    assert len(said) == 1 and "cannot reach Kafka" in said[0]   # tried, and said so once


def test_a_run_that_cannot_be_processed_is_still_finished(damnit_folder, mock_proposal,
                                                          kafka_broker):
    folder = damnit_folder(CONTEXT.read_text(), gui_brokers=kafka_broker).root
    with DamnitDB(folder) as db:
        db_id, settings = db.db_id, db.metameta.to_dict()
    outcome = evaluate_and_store(folder, 1234, 99, folder / "context.py", ["run_no"], "raw",
                                 settings=settings, processing_id="no-such-run")
    assert outcome.error

    messages = consume(kafka_broker, db_id, MsgKind.processing_finished)
    assert [(m["msg_kind"], m["data"].get("status")) for m in messages] == [
        ("processing_state_set", "RUNNING"), ("processing_finished", None)]
    assert {m["data"]["processing_id"] for m in messages} == {"no-such-run"}
