"""A live run's evaluation starts when its event arrives, before Dagster starts the run's
step, and the step stores it: a real daemon with the project's instance configuration
(the fork-server launcher, woken by the inbox)."""
import sqlite3
import time
from pathlib import Path

import dagster as dg
import pytest

from damnit_dagster.events.inbox import EventInbox, wake_address
from damnit_dagster.execution import head_start
from damnit_dagster.ops.mockdata import make_proposal
from damnit_dagster.plugins.home import inbox_path
from support.backend import running_backend

pytestmark = pytest.mark.slow

PROPOSAL = 4571
# Each evaluation of ``started`` appends the time it ran to calls.txt in the folder.
CONTEXT = '''
import time
from damnit_ctx import Variable

@Variable(title="Started")
def started(run, n: "meta#run_number"):
    now = time.time()
    with open("calls.txt", "a") as f:
        f.write(f"{n} {now!r}\\n")
    return now

@Variable(title="Twice")
def twice(run, n: "meta#run_number"):
    return 2 * n
'''


def calls(folder) -> list[tuple[int, float]]:
    path = folder / "calls.txt"
    if not path.exists():
        return []
    return [(int(n), float(t)) for n, t in (line.split() for line in path.read_text().split("\n")
                                            if line)]


def serving(address: str) -> bool:
    """Something listens at the abstract Unix socket ``address``."""
    return f"@{address}" in Path("/proc/net/unix").read_text()


def row(folder, run) -> dict:
    with sqlite3.connect(f"file:{folder / 'runs.sqlite'}?mode=ro", uri=True, timeout=30) as db:
        return dict(db.execute("SELECT name, value FROM run_variables WHERE proposal=? AND "
                               "run=?", (PROPOSAL, run)).fetchall())


def test_a_live_run_is_evaluated_once_from_when_its_event_arrived(tmp_path, damnit_folder,
                                                                   mock_proposal):
    make_proposal(mock_proposal.root, PROPOSAL, [1, 2], ntrains=2, runs_without_proc=[1, 2])
    folder = damnit_folder(CONTEXT, proposal=PROPOSAL).root
    home = tmp_path / "home"
    with running_backend(folder, home) as backend:   # the project's warm run launcher
        backend.wait_for_sensor()
        deadline = time.monotonic() + 120
        while not serving(head_start.address(wake_address(inbox_path()))):   # warm process up
            assert time.monotonic() < deadline, backend.log()[-3000:]
            time.sleep(0.1)
        for run in (1, 2):
            EventInbox(home / "damnit_events.sqlite").add("migration", PROPOSAL, run)
            deadline = time.monotonic() + 120
            while "twice" not in row(folder, run):
                assert time.monotonic() < deadline, backend.log()[-3000:]
                backend.check_alive()
                time.sleep(0.1)
        with backend.instance() as instance:
            runs = {int(r.tags["damnit/run"]): r for r in instance.get_runs(
                dg.RunsFilter(tags={"damnit/trigger": "migration"}))}
            step_started = {run: next(e.timestamp for e in instance.all_logs(r.run_id)
                                      if e.dagster_event and e.dagster_event.is_step_start)
                            for run, r in runs.items()}
    # each run's variables were evaluated once, and before Dagster started the step
    assert [n for n, _ in calls(folder)] == [1, 2]
    for run, when in calls(folder):
        assert when < step_started[run]
        assert row(folder, run)["twice"] == 2 * run
        assert row(folder, run)["started"] == pytest.approx(when)
    log = (folder / "process_logs" / f"r1-p{PROPOSAL}.out").read_text()
    assert "started when the event arrived" in log
    assert not list((folder / "extracted_data").glob("*.fragment.h5*"))
