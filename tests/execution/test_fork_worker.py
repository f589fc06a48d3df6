"""Warm children evaluating runs in turn (``reprocess --stale``, the proc pass): each run
keeps its own results, errors, output and limits, and nothing outlives the pool."""
import os
import textwrap

from damnit_dagster.execution.fork_server import EvaluationServer
from damnit_dagster.execution.fork_worker import WorkerPool
from damnit_dagster.execution.process_run import evaluate_and_store
from damnit_dagster.storage.database import DamnitDB
from support.processes import process_gone

CONTEXT = textwrap.dedent("""
    import os
    import time
    from damnit_ctx import Variable

    @Variable(title="Evaluated by")
    def evaluated_by(run, n: "meta#run_number"):
        print(f"evaluating run {n} in {os.getpid()}")
        if n == 2 and os.path.exists("crash-on-2"):
            os._exit(3)
        if n == 2 and os.path.exists("sleep-on-2"):
            time.sleep(60)
        return os.getpid()

    @Variable(title="Run")
    def run_no(run, n: "meta#run_number"):
        return n
""")


def evaluate_in_turn(folder, proposal, runs, pool, server=None):
    with DamnitDB(folder) as db:
        settings = db.metameta.to_dict()
    return [evaluate_and_store(folder, proposal, run, folder / "context.py",
                               ["evaluated_by", "run_no"], "raw", settings=settings,
                               workers=pool, server=server)
            for run in runs]


def stored(folder, proposal, run, name):
    with DamnitDB(folder) as db:
        row = db.run_values(proposal, run).get(name)
    return None if row is None else row["value"]



def test_runs_evaluated_in_turn_by_one_child_keep_their_own_results_and_output(
        damnit_folder, mock_proposal):
    folder = damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root
    proposal = mock_proposal.proposal
    with WorkerPool() as pool:
        outcomes = evaluate_in_turn(folder, proposal, [1, 2, 3], pool)
    assert [o.error for o in outcomes] == [None, None, None]
    pids = {stored(folder, proposal, run, "evaluated_by") for run in (1, 2, 3)}
    assert len(pids) == 1 and os.getpid() not in pids       # one warm child, not us
    assert [stored(folder, proposal, run, "run_no") for run in (1, 2, 3)] == [1, 2, 3]
    for run in (1, 2, 3):
        log = (folder / "process_logs" / f"r{run}-p{proposal}.out").read_text()
        assert f"evaluating run {run} in" in log
        assert "warm child evaluating runs in turn" in log
        assert not any(f"evaluating run {other} in" in log for other in {1, 2, 3} - {run})
    assert process_gone(pids.pop())                                   # ended with the pool


def test_a_run_that_kills_its_child_fails_alone_and_the_next_gets_a_new_child(
        damnit_folder, mock_proposal):
    folder = damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root
    proposal = mock_proposal.proposal
    (folder / "crash-on-2").touch()
    with WorkerPool() as pool:
        outcomes = evaluate_in_turn(folder, proposal, [1, 2, 3], pool)
    assert [o.error for o in outcomes] == [None, None, None]
    crashed = outcomes[1].variables["evaluated_by"]
    assert crashed["status"] == "error"
    assert "exited with status 3 while computing this variable" in crashed["error"]
    assert stored(folder, proposal, 2, "evaluated_by") is None
    assert stored(folder, proposal, 1, "evaluated_by") != stored(folder, proposal, 3,
                                                                  "evaluated_by")


def test_a_run_reaching_the_time_limit_is_stopped_and_the_next_is_evaluated(
        damnit_folder, mock_proposal):
    folder = damnit_folder(CONTEXT, proposal=mock_proposal.proposal,
                           slurm_time="00:00:03").root
    proposal = mock_proposal.proposal
    (folder / "sleep-on-2").touch()
    with WorkerPool() as pool:
        outcomes = evaluate_in_turn(folder, proposal, [2, 3], pool)
    assert [o.error for o in outcomes] == [None, None]
    assert ("timed out after 00:00:03 (the slurm_time limit) while computing this variable"
            in outcomes[0].variables["evaluated_by"]["error"])
    assert stored(folder, proposal, 3, "run_no") == 3


def test_an_edited_context_file_gets_a_new_child(damnit_folder, mock_proposal):
    folder = damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root
    proposal = mock_proposal.proposal
    with WorkerPool() as pool:
        evaluate_in_turn(folder, proposal, [1], pool)
        context = folder / "context.py"
        context.write_text(context.read_text().replace("return n\n", "return n * 10\n"))
        evaluate_in_turn(folder, proposal, [3], pool)
    assert stored(folder, proposal, 3, "run_no") == 30
    assert stored(folder, proposal, 1, "evaluated_by") != stored(folder, proposal, 3,
                                                                  "evaluated_by")


def test_a_servers_children_evaluate_in_turn_and_end_when_released(damnit_folder,
                                                                   mock_proposal):
    folder = damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root
    proposal = mock_proposal.proposal
    with EvaluationServer(folder, folder / "context.py") as server:
        server.describe(folder / "context.py", folder)
        with WorkerPool() as pool:
            outcomes = evaluate_in_turn(folder, proposal, [1, 3], pool, server=server)
            pid = stored(folder, proposal, 1, "evaluated_by")
            assert not process_gone(pid)
        assert process_gone(pid)                        # released with the pool
        assert server.pid != pid
    assert [o.error for o in outcomes] == [None, None]
    assert stored(folder, proposal, 3, "evaluated_by") == pid



def test_a_child_is_replaced_after_its_share_of_runs(damnit_folder, mock_proposal,
                                                     monkeypatch):
    """What the user's code keeps between runs stays bounded: a child evaluates at most
    ``RUNS_PER_CHILD`` runs."""
    from damnit_dagster.execution import fork_worker

    monkeypatch.setattr(fork_worker, "RUNS_PER_CHILD", 2)
    folder = damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root
    proposal = mock_proposal.proposal
    with WorkerPool() as pool:
        evaluate_in_turn(folder, proposal, [1, 2, 3], pool)
    pids = [stored(folder, proposal, run, "evaluated_by") for run in (1, 2, 3)]
    assert pids[0] == pids[1] != pids[2]
