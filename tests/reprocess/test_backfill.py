"""Reprocessing: run and variable selection, and a real single-run backfill via the daemon."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from damnit_dagster.reprocess.backfill import reprocess
from damnit_dagster.reprocess.selection import choose_variables, parse_runs
from support.paths import REPO
from support.reprocess_context import CONTEXT, assert_results

VARS = [
    {"name": "xgm", "title": "XGM intensity", "data": "raw", "deps": [], "transient": False},
    {"name": "pos", "title": "Positions", "data": "raw", "deps": [], "transient": True},
    {"name": "rng", "title": "Position range", "data": "raw", "deps": ["pos"], "transient": False},
    {"name": "img", "title": "Detector image", "data": "proc", "deps": [], "transient": False},
    {"name": "ratio", "title": "Image per XGM", "data": "proc", "deps": ["img", "xgm"],
     "transient": False},
]


def test_parse_runs_accepts_lists_ranges_and_all():
    assert parse_runs("1-3,7 9") == [1, 2, 3, 7, 9]
    assert parse_runs([5, "2-3"]) == [2, 3, 5]
    assert parse_runs(4) == [4]
    assert parse_runs("ALL") == "all"
    with pytest.raises(ValueError, match="'x2' is not a run number"):
        parse_runs("1,x2")
    with pytest.raises(ValueError, match="backwards"):
        parse_runs("5-3")


def test_choose_variables_follows_damnit_selection_with_dependencies():
    assert choose_variables(VARS) == ["xgm", "rng", "img", "ratio"]
    assert choose_variables(VARS, "proc") == ["xgm", "img", "ratio"]   # raw deps added back
    assert choose_variables(VARS, "raw") == ["xgm", "rng"]
    assert choose_variables(VARS, match=["RANGE"]) == ["rng"]
    assert choose_variables(VARS, names=["ratio"], match=["range"]) == ["xgm", "img", "ratio"]
    with pytest.raises(ValueError, match="unknown variable.*nope"):
        choose_variables(VARS, names=["nope"])




@pytest.fixture
def daemon_setup(tmp_path, damnit_folder, mock_proposal, monkeypatch):
    """20 mock runs of proposal 2345, its DAMNIT folder, a DAGSTER_HOME and a running
    dagster-daemon serving the folder's code location (stopped afterwards)."""
    from damnit_dagster.ops.mockdata import make_proposal

    make_proposal(mock_proposal.root, 2345, range(1, 21), ntrains=20, runs_without_proc=())
    folder = damnit_folder(CONTEXT, proposal=2345).root
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAMNIT_DIR", str(folder))
    log = open(tmp_path / "daemon.log", "w")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
         str(REPO / "workspace.yaml")], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "MPLBACKEND": "Agg"}, start_new_session=True)
    try:
        yield folder, home
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()


@pytest.mark.slow
def test_a_backfill_of_20_runs_processes_all_of_them_in_one_dagster_run(daemon_setup):
    from damnit.api import Damnit

    folder, home = daemon_setup
    seen = []
    with dg.DagsterInstance.get() as instance:
        results = reprocess(folder, "1-20", progress=seen.append, instance=instance,
                            timeout=420)
        backfill_runs = instance.get_runs(filters=dg.RunsFilter(
            tags={"dagster/backfill": seen[-1].backfill_id}))
    assert_results(results, range(1, 21))
    assert len(backfill_runs) == 1           # one Dagster run covered the 20 partitions
    assert seen[-1].done == 20 and seen[-1].total == 20
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    table = Damnit(folder).table()
    assert sorted(table.run) == list(range(1, 21))
    assert table.set_index("run").run_no.to_dict() == {r: r for r in range(1, 21)}
