"""Evaluations started when the event arrives (``execution/head_start.py``): a warm process
serving head starts as the run workers' zygote does, and the step that takes one over."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from damnit_dagster.execution import head_start
from damnit_dagster.execution.process_run import evaluate_and_store
from damnit_dagster.storage.database import DamnitDB
from support.paths import REPO

# ``counted`` appends a line per evaluation to calls.txt (in the folder: evaluations run
# there); it sleeps when $HEAD_START_SLOW is set (only the warm process of a test has it).
CONTEXT = '''
import os
import time
from damnit_ctx import Variable

@Variable(title="Counted")
def counted(run, n: "meta#run_number"):
    with open("calls.txt", "a") as f:
        f.write(f"{os.getpid()}\\n")
    if os.environ.get("HEAD_START_SLOW"):
        time.sleep(60)
    return n

@Variable(title="Twice")
def twice(run, n: "meta#run_number"):
    return 2 * n
'''

# The warm process: the zygote's loop, serving head starts only.
SERVER = '''
import select, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
from damnit_dagster.execution import head_start
server = head_start.serve(())
print("ready" if server else "not serving", flush=True)
while True:
    select.select([server], [], [])
    server.handle()
'''


@pytest.fixture
def folder(damnit_folder, mock_proposal):
    return damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root


@pytest.fixture
def warm_process(folder, monkeypatch):
    """Start the warm process of ``folder`` (extra environment as arguments); its doorbell
    address is this process's too, so :func:`head_start.request` reaches it."""
    started = []
    wake = f"test-head-start-{uuid.uuid4().hex}"
    monkeypatch.setenv("DAMNIT_WAKE_ADDRESS", wake)

    def start(**env):
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER], cwd=REPO, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "DAMNIT_DIR": str(folder), "MPLBACKEND": "Agg", **env},
            start_new_session=True)
        started.append(process)
        assert process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def calls(folder) -> list[int]:
    path = folder / "calls.txt"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def ask(folder, variables, run=1, settings=None) -> bool:
    return head_start.request(damnit_dir=folder, proposal=1234, run=run,
                              context_path=folder / "context.py", variables=variables,
                              data="raw", settings=settings or settings_of(folder))


def settings_of(folder) -> dict:
    with DamnitDB(folder) as db:
        return db.metameta.to_dict()


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def head_files(folder) -> list[Path]:
    return sorted((folder / "extracted_data").glob("*.fragment.h5*"))


def process(folder, variables, run=1):
    return evaluate_and_store(folder, 1234, run, folder / "context.py", variables, "raw",
                              settings=settings_of(folder), head_start=True)


def test_a_head_start_is_stored_by_the_step_without_evaluating_again(folder, warm_process):
    server = warm_process()
    assert ask(folder, ["counted", "twice"])
    wait_for(lambda: calls(folder))
    outcome = process(folder, ["twice", "counted"])   # the same, in another order

    assert outcome.error is None
    assert {n: v["status"] for n, v in outcome.variables.items()} == {"counted": "ok",
                                                                       "twice": "ok"}
    assert len(calls(folder)) == 1 and calls(folder)[0] not in (os.getpid(), server.pid)
    with DamnitDB(folder) as db:
        values = db.run_values(1234, 1)
    assert (values["counted"]["value"], values["twice"]["value"]) == (1, 2)
    log = (folder / "process_logs" / "r1-p1234.out").read_text()
    header = log.index("started when the event arrived")
    assert header < log.index("Computed counted") < log.index("----- r1 done")
    assert head_files(folder) == []


def test_a_step_that_asks_for_something_else_evaluates_itself(folder, warm_process):
    warm_process()
    assert ask(folder, ["twice"])
    wait_for(lambda: any(p.name.endswith(".done") for p in head_files(folder)))
    assert calls(folder) == []                    # the head start computed twice only
    outcome = process(folder, ["counted", "twice"])

    assert outcome.error is None
    assert len(calls(folder)) == 1
    log = (folder / "process_logs" / "r1-p1234.out").read_text()
    assert "started when the event arrived" not in log
    assert head_files(folder) == []       # the dead head start's files, removed by the store


def test_a_changed_context_file_is_evaluated_again(folder, warm_process):
    warm_process()
    assert ask(folder, ["counted", "twice"])
    wait_for(lambda: any(p.name.endswith(".done") for p in head_files(folder)))
    context = folder / "context.py"
    context.write_text(context.read_text().replace("return 2 * n", "return 3 * n"))
    outcome = process(folder, ["counted", "twice"])

    assert len(calls(folder)) == 2
    with DamnitDB(folder) as db:
        assert db.run_values(1234, 1)["twice"]["value"] == 3
    assert outcome.error is None


def test_a_head_start_killed_before_it_ended_is_evaluated_by_the_step(folder, warm_process):
    warm_process(HEAD_START_SLOW="1")
    assert ask(folder, ["counted", "twice"])
    wait_for(lambda: calls(folder))
    [marker] = [p for p in head_files(folder) if ".head-" in p.name]
    os.kill(json.loads(marker.read_text())["pid"], signal.SIGKILL)   # its child follows
    outcome = process(folder, ["counted", "twice"])

    assert outcome.error is None
    assert calls(folder)[-1] != calls(folder)[0] and len(calls(folder)) == 2
    with DamnitDB(folder) as db:
        assert db.run_values(1234, 1)["counted"]["value"] == 1
    assert head_files(folder) == []


def test_requests_for_another_folder_are_ignored(folder, warm_process, damnit_folder,
                                                 mock_proposal):
    other = damnit_folder(CONTEXT, proposal=mock_proposal.proposal, name="other").root
    warm_process()
    assert ask(other, ["counted", "twice"])
    assert ask(folder, ["twice"], run=2)          # served after the first one
    wait_for(lambda: any(p.name.endswith(".done") for p in head_files(folder)))
    assert head_files(other) == [] and calls(other) == []


def test_without_a_backend_nothing_is_asked(folder, monkeypatch):
    monkeypatch.delenv("DAMNIT_WAKE_ADDRESS", raising=False)
    assert not ask(folder, ["twice"])
    monkeypatch.setenv("DAMNIT_WAKE_ADDRESS", f"nobody-{uuid.uuid4().hex}")
    assert not ask(folder, ["twice"])


def test_at_most_two_head_starts_run_at_once(folder, warm_process):
    warm_process(HEAD_START_SLOW="1")

    def markers():
        return {int(p.name.split("_r")[1].split(".")[0]): p for p in head_files(folder)
                if p.name.split(".")[-1].startswith("head-")}

    assert ask(folder, ["counted"], run=1) and ask(folder, ["counted"], run=2)
    wait_for(lambda: len(markers()) == 2)
    assert ask(folder, ["counted"], run=3)        # dropped: two are running
    time.sleep(2)                                 # (served in milliseconds)
    assert set(markers()) == {1, 2}
    first = json.loads(markers()[1].read_text())["pid"]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{first}").exists())
    assert ask(folder, ["counted"], run=4)        # a slot is free again
    wait_for(lambda: 4 in markers())
    assert set(markers()) == {1, 2, 4}
