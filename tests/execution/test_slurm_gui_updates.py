"""A Slurm evaluation as DAMNIT's GUI sees it: queued with its job, running on its node,
values, finished (messages on a real broker, nafka on 127.0.0.1, against the loopback
Slurm of scripts/start_slurm.sh)."""
import subprocess
import textwrap

import pytest
from damnit.backend.db import MsgKind

from damnit_dagster.execution.process_run import evaluate_and_store
from damnit_dagster.storage.database import DamnitDB
from support.gui_messages import consume
from support.paths import REPO

pytestmark = pytest.mark.slow

CONTEXT = textwrap.dedent("""
    import os
    from damnit_ctx import Variable

    @Variable(title="Job", cluster=True)
    def job_id(run):
        return os.environ["SLURM_JOB_ID"]
""")


def test_a_slurm_job_is_announced_with_its_id(damnit_folder, mock_proposal, kafka_broker):
    subprocess.run([str(REPO / "scripts" / "start_slurm.sh")], check=True, timeout=300)
    folder = damnit_folder(CONTEXT, gui_brokers=kafka_broker).root
    with DamnitDB(folder) as db:
        db_id, settings = db.db_id, db.metameta.to_dict()
    outcome = evaluate_and_store(folder, mock_proposal.proposal, 1, folder / "context.py",
                                 ["job_id"], "raw", settings=settings, cluster=True)
    assert outcome.error is None

    messages = consume(kafka_broker, db_id, MsgKind.processing_finished)
    states = [m["data"] for m in messages if m["msg_kind"] == "processing_state_set"]
    assert [s["status"] for s in states] == ["PENDING", "RUNNING"]
    job = outcome.summaries["job_id"]
    assert [s["slurm_job_id"] for s in states] == [job, job]
    assert states[0]["hostname"] == "" and states[1]["hostname"]   # the job's node
    assert [m["msg_kind"] for m in messages][-2:] == ["run_values_updated",
                                                      "processing_finished"]
    assert "job_id" in messages[-2]["data"]["values"]
