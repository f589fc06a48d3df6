"""The evaluation server of a direct reprocess: describes and evaluates the context file
in its own warm process, so the command never executes the user's code itself."""
import os
import signal
import subprocess
import sys
from pathlib import Path

from damnit_dagster.execution.describe import describe_file
from damnit_dagster.execution.fork_server import EvaluationServer
from damnit_dagster.execution.process_run import evaluate_and_store
from damnit_dagster.storage.database import DamnitDB
from support.paths import REPO
from support.reprocess_context import CONTEXT


def recording(tmp_path) -> str:
    """The reprocessing context, recording which processes execute it."""
    return CONTEXT.read_text() + f'''
import os
with open({str(tmp_path / "executed-by.txt")!r}, "a") as _f:
    _f.write(f"{{os.getpid()}}\\n")
'''


def executed_by(tmp_path: Path) -> set[int]:
    return {int(p) for p in (tmp_path / "executed-by.txt").read_text().split()}


def test_the_server_describes_and_evaluates_the_context_file(tmp_path, damnit_folder,
                                                             mock_proposal):
    folder = damnit_folder(recording(tmp_path), proposal=mock_proposal.proposal).root
    context = folder / "context.py"
    with EvaluationServer(folder, context) as server:
        described = server.describe(context, folder)
        outcomes = [evaluate_and_store(folder, mock_proposal.proposal, run, context,
                                       ["run_no", "odd_only"], "raw", server=server)
                    for run in (1, 2)]
        server_pid = server.pid

    assert described == describe_file(context, folder)
    assert [o.error for o in outcomes] == [None, None]
    assert outcomes[0].variables["odd_only"]["status"] == "ok"
    assert outcomes[1].variables["odd_only"]["error"] == "run 2 is even"
    with DamnitDB(folder) as db:
        assert db.run_values(mock_proposal.proposal, 1)["odd_only"]["value"] == 1
    assert server_pid in executed_by(tmp_path)     # (this test's describe_file too)
    assert "run 2 is even" in (folder / "process_logs" / "r2-p1234.out").read_text()


def test_a_broken_context_file_is_described_with_its_problems(damnit_folder, mock_proposal):
    folder = damnit_folder("from damnit_ctx import Variable\n\n@Variable(title='A')\n"
                           "def a(run):\n    return 1 +\n", proposal=mock_proposal.proposal).root
    with EvaluationServer(folder, folder / "context.py") as server:
        described = server.describe(folder / "context.py", folder)
    assert described["ok"] is False
    assert "context.py:5: SyntaxError" in described["problems"][0]


def test_an_edited_context_file_is_described_again(damnit_folder, mock_proposal):
    """A server kept across edits (``reprocess --stale`` asks it for the code versions)
    describes the file as it is now, not as it was first."""
    folder = damnit_folder(CONTEXT.read_text(), proposal=mock_proposal.proposal).root
    context = folder / "context.py"
    with EvaluationServer(folder, context) as server:
        before = {v["name"]: v for v in server.describe(context, folder)["variables"]}
        context.write_text(context.read_text().replace("    return n\n",
                                                       "    return n + 0\n", 1))
        after = {v["name"]: v for v in server.describe(context, folder)["variables"]}
    assert after["run_no"]["code_version"] != before["run_no"]["code_version"]
    assert after == {v["name"]: v for v in describe_file(context, folder)["variables"]}


def test_runs_are_not_processed_with_a_clear_error_when_the_server_died(damnit_folder,
                                                                        mock_proposal):
    folder = damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root
    with EvaluationServer(folder, folder / "context.py") as server:
        os.kill(server.pid, signal.SIGKILL)
        outcome = evaluate_and_store(folder, mock_proposal.proposal, 1, folder / "context.py",
                                     ["run_no"], "raw", server=server)
    assert outcome.error.startswith("RuntimeError: the evaluation server")
    with DamnitDB(folder) as db:
        assert not db.run_values(mock_proposal.proposal, 1)


def test_a_direct_reprocess_command_never_executes_the_users_code_itself(tmp_path, damnit_folder,
                                                                         mock_proposal):
    folder = damnit_folder(recording(tmp_path), proposal=mock_proposal.proposal).root
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    command = subprocess.Popen(
        [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(folder),
         "reprocess", "1-2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=folder, env={**os.environ, "DAGSTER_HOME": str(home), "MPLBACKEND": "Agg"})
    out, err = command.communicate(timeout=300)
    assert command.returncode == 0, err
    assert "p1234: 2 of 2 runs processed, 1 variable failure(s)" in out
    assert command.pid not in executed_by(tmp_path)
    assert len(executed_by(tmp_path)) == 1       # one server described and evaluated


def test_a_context_file_the_server_cannot_load_is_the_runs_error(damnit_folder, mock_proposal):
    folder = damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root
    broken = folder / "broken.py"
    broken.write_text("import no_such_module_here\n")
    with EvaluationServer(folder, folder / "context.py") as server:
        outcome = evaluate_and_store(folder, mock_proposal.proposal, 1, broken, ["run_no"],
                                     "raw", server=server)
    assert "no_such_module_here" in outcome.error
