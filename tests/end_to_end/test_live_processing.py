"""Live processing next to reprocessing, coalesced bursts, and a backend killed in the
middle of a batch: a real daemon (fork-server launcher, woken by the inbox) serving a
DAMNIT folder over mock runs that are hard links of one run."""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import h5py
import pytest

from damnit_dagster.events.inbox import EventInbox
from damnit_dagster.ops.mockdata import make_proposal
from support.backend import running_backend

pytestmark = pytest.mark.slow

PROPOSAL = 4569
# run_no takes a second for the runs named in SLOW (the old runs a reprocess recomputes,
# or every run of a batch the backend is killed in); odd fails for multiples of 3.
CONTEXT = '''
import os
import time
from damnit_ctx import Variable

@Variable(title="Run number")
def run_no(run, n: "meta#run_number"):
    if n >= int(os.environ.get("SLOW_FROM", "1000000")):
        time.sleep(1)
    return n

@Variable(title="Odd one")
def odd(run, n: "meta#run_number"):
    if n % 3 == 0:
        raise ValueError(f"run {n} is a multiple of 3")
    return n * 10
'''


@pytest.fixture
def folder(tmp_path, damnit_folder, mock_proposal):
    """A folder of proposal 4569 with runs 1-12 and 100-189 (hard links of one run)."""
    pdir = make_proposal(mock_proposal.root, PROPOSAL, [1], ntrains=2, runs_without_proc=[1])
    for run in [*range(2, 13), *range(100, 190)]:
        shutil.rmtree(pdir / "raw" / f"r{run:04d}", ignore_errors=True)
        shutil.copytree(pdir / "raw" / "r0001", pdir / "raw" / f"r{run:04d}",
                        copy_function=os.link)
    return damnit_folder(CONTEXT, proposal=PROPOSAL).root


def stored(folder, run):
    """``{name: value or ("error", message)}`` from the run's HDF5 file ({} if none)."""
    path = folder / "extracted_data" / f"p{PROPOSAL}_r{run}.h5"
    if not path.exists():
        return {}
    out = {}
    with h5py.File(path, "r", locking=False) as f:   # a writer may hold its lock
        for name in f.get(".errors", {}):
            out[name] = ("error", f[f".errors/{name}"][()].decode())
        for name in f:
            if not name.startswith(".") and "data" in f[name]:
                out[name] = f[f"{name}/data"][()]
    return out


def in_db(folder, run) -> bool:
    """``run_no`` of ``run`` is a row of ``runs.sqlite``."""
    with sqlite3.connect(f"file:{folder / 'runs.sqlite'}?mode=ro", uri=True, timeout=30) as db:
        return db.execute("SELECT 1 FROM run_variables WHERE proposal=? AND run=? AND "
                          "name='run_no'", (PROPOSAL, run)).fetchone() is not None


def wait_until(condition, backend, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout} s\n" + backend.log()[-3000:])
        backend.check_alive()
        time.sleep(0.2)


def live_runs(instance):
    return instance.get_runs(dg.RunsFilter(tags={"damnit/trigger": "migration"}))


def test_a_live_event_during_a_long_reprocess_is_stored_before_it_ends(folder, tmp_path):
    env = {"SLOW_FROM": "100"}
    with running_backend(folder, tmp_path / "home", env=env) as backend:
        backend.wait_for_sensor()
        reprocess = subprocess.Popen(
            [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(folder),
             "reprocess", "100-189"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, **env})
        with backend.instance() as instance:
            wait_until(lambda: instance.get_runs(dg.RunsFilter(
                tags={"damnit/trigger": "reprocess"}, statuses=[dg.DagsterRunStatus.STARTED])),
                backend, "no reprocessing run started")
            EventInbox(tmp_path / "home" / "damnit_events.sqlite").add("migration", PROPOSAL, 5)
            wait_until(lambda: in_db(folder, 5), backend, "r5 not stored")
            assert reprocess.poll() is None, "the reprocess ended before the live run's result"
            assert sum(in_db(folder, r) for r in range(100, 190)) < 90
            out, _ = reprocess.communicate(timeout=600)
            assert reprocess.returncode == 0, out
            live = live_runs(instance)
            old = instance.get_runs(dg.RunsFilter(tags={"damnit/trigger": "reprocess"}))
    assert all(stored(folder, r)["run_no"] == r for r in range(100, 190))
    assert [r.tags["dagster/priority"] for r in live] == ["10"]
    assert {r.tags["dagster/priority"] for r in old} == {"-10"}


def test_coalesced_runs_keep_each_runs_results_and_errors(folder, tmp_path, mock_proposal):
    broken = next(mock_proposal.root.rglob(f"p{PROPOSAL:06d}")) / "raw" / "r0007"
    shutil.rmtree(broken)
    broken.mkdir()   # the folder is there, but no file: the run cannot be opened
    home = tmp_path / "home"
    home.mkdir()
    inbox = EventInbox(home / "damnit_events.sqlite")
    for run in range(1, 13):   # all waiting when the backend starts: one batch
        inbox.add("migration", PROPOSAL, run)
    with running_backend(folder, home) as backend:
        with backend.instance() as instance:
            wait_until(lambda: live_runs(instance) and all(
                r.is_finished for r in live_runs(instance)), backend, "no finished batch")
            [batch] = live_runs(instance)
            materialized = sorted(int(r.partition_key) for r in instance.fetch_materializations(
                dg.AssetKey([f"p{PROPOSAL}", "run_no"]), limit=100).records)
            failure = [e for e in instance.all_logs(batch.run_id)
                       if e.dagster_event and e.dagster_event.is_step_failure]
    assert (batch.tags["dagster/asset_partition_range_start"],
            batch.tags["dagster/asset_partition_range_end"]) == ("1", "12")
    assert batch.status == dg.DagsterRunStatus.FAILURE
    why = str(failure[0].dagster_event.event_specific_data)
    assert "1 of 12 runs could not be processed" in why and "r7:" in why
    assert materialized == [r for r in range(1, 13) if r != 7]
    assert stored(folder, 7) == {}
    for run in [r for r in range(1, 13) if r != 7]:
        values = stored(folder, run)
        assert values["run_no"] == run
        if run % 3:
            assert values["odd"] == run * 10
        else:
            assert values["odd"] == ("error", f"run {run} is a multiple of 3")


def test_a_backend_killed_in_the_middle_of_a_batch_loses_no_event(folder, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    inbox = EventInbox(home / "damnit_events.sqlite")
    for run in range(1, 13):
        inbox.add("migration", PROPOSAL, run)
    env = {"SLOW_FROM": "1"}

    def done():
        return sum(in_db(folder, r) for r in range(1, 13))

    with running_backend(folder, home, env=env) as backend:
        wait_until(lambda: done() > 0, backend, "no run of the batch stored")
        os.killpg(backend.processes["daemon"].pid, signal.SIGKILL)   # with its run workers
        backend.processes["daemon"].wait()
    assert done() < 12
    with running_backend(folder, home, env=env) as backend:
        wait_until(lambda: done() == 12, backend, "events lost")
        with backend.instance() as instance:
            runs = live_runs(instance)
    assert all(stored(folder, r)["run_no"] == r for r in range(1, 13))
    killed = [r for r in runs if "dagster/parent_run_id" not in r.tags]
    assert len(killed) == 1 and killed[0].status == dg.DagsterRunStatus.FAILURE
    assert any(r.tags.get("dagster/parent_run_id") == killed[0].run_id for r in runs)


def test_a_reprocess_starts_at_once_not_at_the_backfill_loops_next_pass(folder, tmp_path):
    env = {"DAMNIT_BACKFILL_LOOP_SECONDS": "600"}   # only the command's ring can start it
    with running_backend(folder, tmp_path / "home", env=env) as backend:
        backend.wait_for_sensor()
        with backend.instance() as instance:   # the backfill loop's first pass is over
            wait_until(lambda: "BACKFILL" in instance.get_daemon_heartbeats(), backend,
                       "no backfill loop")
        time.sleep(1)
        t0 = time.monotonic()
        done = subprocess.run(
            [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(folder),
             "reprocess", "100-103"], capture_output=True, text=True, timeout=300,
            env={**os.environ, **env})
        took = time.monotonic() - t0
        with backend.instance() as instance:
            backfills = instance.get_backfills()
    assert done.returncode == 0, done.stdout + done.stderr
    assert took < 120
    assert len(backfills) == 1      # the backend's daemon did the work
    assert all(stored(folder, r)["run_no"] == r for r in range(100, 104))
