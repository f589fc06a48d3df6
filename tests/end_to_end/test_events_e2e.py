"""Events in, results out: a real daemon (fork-server launcher, fast sensor loop) serving a
DAMNIT folder, fed through the embedded inbox, the ``damnit-dagster event`` command and
Kafka (nafka on 127.0.0.1 + the bridge); results read through ``damnit.api``."""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from damnit_dagster.events.inbox import EventInbox
from damnit_dagster.events.kafka import run_bridge
from damnit_dagster.ops.mockdata import make_proposal, make_run
from damnit_dagster.plugins.home import inbox_path
from support.backend import running_backend
from support.folders import make_damnit_folder
from support.kafka_broker import send as _send
from support.spec_examples import FIRST_EXAMPLE

PROPOSAL = 4567
# The spec's example context, plus one proc variable for calibration events.
CONTEXT = FIRST_EXAMPLE + '''
@Variable(title="Detector mean", data="proc")
def detector_mean(run):
    return float(run["MID_DET_AGIPD1M-1/CORR/0CH0:output", "image.data"].ndarray().mean())
'''


@pytest.fixture(scope="module")
def backend(tmp_path_factory, mock_proposal):
    """Runs 1-5 of proposal 4567 (run 6 is written later by a test) and its backend."""
    tmp = tmp_path_factory.mktemp("events-e2e")
    make_proposal(mock_proposal.root, PROPOSAL, range(1, 6), ntrains=20, runs_without_proc=())
    folder = make_damnit_folder(tmp / "amore", CONTEXT, proposal=PROPOSAL).root
    with running_backend(folder, tmp / "home") as backend:
        backend.wait_for_sensor()
        yield backend


def wait_for_values(backend, run, names, timeout=60):
    """The run's values through damnit.api once all ``names`` are there."""
    from damnit.api import Damnit

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backend.check_alive()
        try:
            db = Damnit(backend.damnit_dir)
            if run in db.runs() and set(names) <= set(db[run].keys()):
                return db[run]
        except KeyError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"r{run}: {names} not in runs.sqlite after {timeout} s\n"
                         + backend.log()[-3000:])


def dagster_runs(backend, run, wait_finished=True, timeout=60):
    """The Dagster runs made for a run number (after they finished)."""
    deadline = time.monotonic() + timeout
    with backend.instance() as instance:
        while True:
            runs = instance.get_runs(dg.RunsFilter(tags={"damnit/run": str(run)}))
            if not wait_finished or all(r.is_finished for r in runs) or time.monotonic() > deadline:
                return runs
            time.sleep(0.1)


def expected_xgm(mock_proposal, run):
    from extra.components import XGM
    from extra_data import open_run

    return XGM(open_run(PROPOSAL, run, data="raw")).pulse_energy().mean("pulseIndex")


def test_migration_event_from_the_command_gives_raw_variables(backend, mock_proposal):
    t0 = time.monotonic()
    out = subprocess.run([str(Path(sys.executable).parent / "damnit-dagster"), "--dir",
                          str(backend.damnit_dir), "event", "migration", "1"],
                         capture_output=True, text=True, check=True).stdout
    assert f"migration of p{PROPOSAL} r1: event" in out
    row = wait_for_values(backend, 1, {"xgm_intensity", "pulses"})
    latency = time.monotonic() - t0
    assert row["xgm_intensity"].read().values == pytest.approx(
        expected_xgm(mock_proposal, 1).values)
    assert row["pulses"].summary() > 0
    assert "detector_mean" not in row.keys()        # proc waits for calibration
    [dagster_run] = dagster_runs(backend, 1)
    assert dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert dagster_run.job_name == "raw" and dagster_run.tags["damnit/trigger"] == "migration"
    assert latency < 30, f"{latency:.1f} s from event to values"


def test_calibration_event_runs_the_proc_variables(backend):
    EventInbox(inbox_path()).add("calibration", PROPOSAL, 2)
    row = wait_for_values(backend, 2, {"detector_mean"})
    assert row["detector_mean"].read() > 0
    assert "xgm_intensity" not in row.keys()        # no migration event for r2
    assert [r.job_name for r in dagster_runs(backend, 2)] == ["proc"]


def test_duplicate_and_replayed_events_run_once(backend):
    inbox = EventInbox(inbox_path())
    inbox.add("migration", PROPOSAL, 3)
    inbox.add("migration", PROPOSAL, 3)                       # same tick
    inbox.add("migration", PROPOSAL, 3, source="kafka:test.r2d2", source_id="test.r2d2:0:77")
    assert inbox.add("migration", PROPOSAL, 3, source="kafka:test.r2d2",
                     source_id="test.r2d2:0:77") is None      # a replayed Kafka record
    wait_for_values(backend, 3, {"xgm_intensity"})
    inbox.add("migration", PROPOSAL, 3)                       # a later tick
    time.sleep(3)
    runs = dagster_runs(backend, 3)
    assert len(runs) == 1, [r.run_id for r in runs]


def test_events_of_other_proposals_are_ignored(backend):
    inbox = EventInbox(inbox_path())
    inbox.add("migration", 9999, 99)
    inbox.add("migration", PROPOSAL, 4)     # stored after it: seen in the same or a later tick
    wait_for_values(backend, 4, {"xgm_intensity"})
    assert dagster_runs(backend, 99, wait_finished=False) == []
    with backend.instance() as instance:
        assert "99" not in instance.get_dynamic_partitions(f"p{PROPOSAL}_runs")


def test_an_event_waits_for_its_data_folder(backend, mock_proposal):
    EventInbox(inbox_path()).add("migration", PROPOSAL, 6)
    time.sleep(3)                                            # several sensor ticks
    assert dagster_runs(backend, 6, wait_finished=False) == []
    make_run(mock_proposal.root / "MID/202501/p004567", PROPOSAL, 6, ntrains=20)
    assert wait_for_values(backend, 6, {"xgm_intensity", "pulses"})["pulses"].summary() > 0


def test_kafka_events_through_the_bridge(backend, kafka_broker):
    _send(kafka_broker, [("test.r2d2", {"event": "warmup", "proposal": 1, "run": 1}),
                         ("cal.offline-corrections", {"event": "warmup", "proposal": 1, "run": 1})])
    stop, ready = threading.Event(), threading.Event()
    bridge = threading.Thread(target=run_bridge, args=([kafka_broker], EventInbox(inbox_path())),
                              kwargs=dict(group_id="e2e", stop=stop, ready=ready))
    bridge.start()
    try:
        assert ready.wait(30), "the bridge never got its partitions"
        _send(kafka_broker, [
            ("test.r2d2", b"{broken json"),
            ("test.r2d2", {"event": "migration_complete", "proposal": "004567", "run": "five"}),
            ("test.r2d2", {"event": "migration_complete", "proposal": "004567", "run": "0005",
                           "instrument": "MID", "cycle": "202501"}),
            ("cal.offline-corrections",
             {"event": "run_corrections_complete", "proposal": PROPOSAL, "run": 5}),
        ])
        row = wait_for_values(backend, 5, {"xgm_intensity", "pulses", "detector_mean"})
    finally:
        stop.set()
        bridge.join(30)
    assert row["detector_mean"].read() > 0
    assert sorted(r.job_name for r in dagster_runs(backend, 5)) == ["proc", "raw"]


TINY_CONTEXT = '''
from damnit_ctx import Variable

@Variable(title="Run number")
def run_no(run, n: "meta#run_number"):
    return n
'''


@pytest.mark.slow
def test_a_burst_of_200_events_gives_200_processed_runs(tmp_path, damnit_folder, mock_proposal):
    """200 migration events at once, with repeated events mixed in (runs hard-linked from
    one mock run, a one-variable context): gathered into a few ranged Dagster runs, every
    run processed and its partition materialised exactly once."""
    proposal, n = 4568, 200
    pdir = make_proposal(mock_proposal.root, proposal, [1], ntrains=2, runs_without_proc=[1])
    for run in range(2, n + 1):
        shutil.copytree(pdir / "raw" / "r0001", pdir / "raw" / f"r{run:04d}",
                        copy_function=os.link)
    folder = damnit_folder(TINY_CONTEXT, proposal=proposal).root
    with running_backend(folder, tmp_path / "home") as backend:
        backend.wait_for_sensor()
        inbox = EventInbox(inbox_path())
        t0 = time.monotonic()
        for run in range(1, n + 1):
            inbox.add("migration", proposal, run)
            if run % 4 == 0:  # a repeated event of a run just sent
                inbox.add("migration", proposal, run - 2)
        from damnit.api import Damnit

        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            backend.check_alive()
            table = Damnit(folder).table()
            if len(table) == n and table.run_no.notna().all():
                break
            time.sleep(2)
        elapsed = time.monotonic() - t0
        with backend.instance() as instance:
            runs = instance.get_runs(dg.RunsFilter(tags={"damnit/trigger": "migration"}))
            while not all(r.is_finished for r in runs):
                time.sleep(0.5)
                runs = instance.get_runs(dg.RunsFilter(tags={"damnit/trigger": "migration"}))
            stored = instance.fetch_materializations(
                dg.AssetKey([f"p{proposal}", "run_no"]), limit=10 * n).records
    print(f"200 events processed in {elapsed:.0f} s ({elapsed / n:.2f} s/run) "
          f"by {len(runs)} Dagster runs")
    assert table.set_index("run").run_no.to_dict() == {r: r for r in range(1, n + 1)}
    assert sorted(int(r.partition_key) for r in stored) == list(range(1, n + 1))
    assert len(runs) < n
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)


def test_reprocess_while_the_backend_runs_is_a_backfill_of_its_daemon(backend):
    out = subprocess.run([str(Path(sys.executable).parent / "damnit-dagster"), "--dir",
                          str(backend.damnit_dir), "reprocess", "3", "--var", "pulses"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr + backend.log()[-3000:]
    assert f"p{PROPOSAL}: 1 of 1 runs processed, 0 variable failure(s)" in out.stdout
    with backend.instance() as instance:
        [backfill] = [b for b in instance.get_backfills()
                      if b.tags.get("damnit/trigger") == "reprocess"]
        [dagster_run] = instance.get_runs(filters=dg.RunsFilter(
            tags={"dagster/backfill": backfill.backfill_id}))
    assert dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert dagster_run.tags["dagster/asset_partition_range_start"] == "3"
