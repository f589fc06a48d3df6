"""``reprocess --direct`` as DAMNIT's GUI sees it (a real broker, nafka on 127.0.0.1): each
run queued, then running, its values, finished, under one processing id per run."""
import dagster as dg
from damnit.backend.db import MsgKind

from damnit_dagster.ops.mockdata import make_proposal
from damnit_dagster.reprocess.direct import reprocess_direct
from damnit_dagster.storage.database import DamnitDB
from support.gui_messages import consume
from support.paths import REPO
from support.reprocess_context import CONTEXT

PROPOSAL = 3457


def test_a_direct_reprocess_is_announced_run_by_run(tmp_path, damnit_folder, mock_proposal,
                                                    kafka_broker, monkeypatch):
    make_proposal(mock_proposal.root, PROPOSAL, [1, 2], ntrains=20, runs_without_proc=())
    folder = damnit_folder(CONTEXT, proposal=PROPOSAL, gui_brokers=kafka_broker).root
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        reprocess_direct(folder, "1-2", variables=["run_no"], instance=instance)
    with DamnitDB(folder) as db:
        db_id = db.db_id

    messages = consume(kafka_broker, db_id, MsgKind.processing_finished, count=2)
    run_of = {m["data"]["processing_id"]: m["data"]["run"] for m in messages
              if m["msg_kind"] == "processing_state_set"}
    assert sorted(run_of.values()) == [1, 2]            # one processing id per run
    seen = {1: [], 2: []}
    for m in messages:
        data = m["data"]
        if m["msg_kind"] == "run_values_updated":
            seen[data["run"]].append((m["msg_kind"], None))
        elif m["msg_kind"] != "variable_set":
            seen[run_of[data["processing_id"]]].append((m["msg_kind"], data.get("status")))
    for run in (1, 2):
        assert seen[run] == [("processing_state_set", "PENDING"),
                             ("processing_state_set", "RUNNING"),
                             ("run_values_updated", None), ("processing_finished", None)], run
