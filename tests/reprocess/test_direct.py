"""``reprocess --direct``: the command executes the Dagster runs itself, no daemon."""
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from damnit_dagster.defs.partitions import partitions_name
from damnit_dagster.reprocess.direct import TRIGGER, partition_ranges, reprocess_direct
from support.paths import REPO
from support.reprocess_context import CONTEXT, assert_results

PROPOSAL = 3456



def test_partition_ranges_follow_the_order_of_the_partitions():
    keys = ["1", "2", "3", "5", "4", "6"]        # run 5 was added before run 4
    assert partition_ranges(keys, [1, 2, 3]) == [("1", "3")]
    assert partition_ranges(keys, [2, 3, 4]) == [("2", "3"), ("4", "4")]
    assert partition_ranges(keys, [4, 5, 6]) == [("5", "6")]
    assert partition_ranges(keys, [1, 6]) == [("1", "1"), ("6", "6")]


def test_partition_ranges_are_cut_at_max_runs():
    keys = [str(r) for r in range(1, 11)]
    assert partition_ranges(keys, list(range(1, 11)), max_runs=4) == [
        ("1", "4"), ("5", "8"), ("9", "10")]
    assert partition_ranges(keys, [1, 2, 3, 5, 6], max_runs=2) == [
        ("1", "2"), ("3", "3"), ("5", "6")]


@pytest.fixture
def direct_setup(tmp_path, damnit_folder, mock_proposal, monkeypatch):
    """6 mock runs of proposal 3456, its DAMNIT folder and a DAGSTER_HOME (no daemon)."""
    from damnit_dagster.ops.mockdata import make_proposal

    make_proposal(mock_proposal.root, PROPOSAL, range(1, 7), ntrains=20, runs_without_proc=())
    folder = damnit_folder(CONTEXT, proposal=PROPOSAL).root
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return folder


def test_direct_reprocess_stores_results_and_records_one_dagster_run(direct_setup):
    from damnit.api import Damnit

    folder = direct_setup
    seen = []
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(partitions_name(PROPOSAL), ["1", "2", "3", "5"])
        results = reprocess_direct(folder, "2-4", progress=seen.append, instance=instance)
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"damnit/trigger": TRIGGER}))
        materialized = instance.get_materialized_partitions(
            dg.AssetKey([f"p{PROPOSAL}", "xgm_intensity"]))
        planned = {r.run_id: [e.event_log_entry.dagster_event for e in instance.get_records_for_run(
            r.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records]
            for r in runs}

    assert_results(results, [2, 3, 4])
    # run 4 became a partition after run 5: two ranges, two Dagster runs, both successful
    assert sorted((r.tags["dagster/asset_partition_range_start"],
                   r.tags["dagster/asset_partition_range_end"]) for r in runs) == [
        ("2", "3"), ("4", "4")]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert materialized == {"2", "3", "4"}
    # each variable's planned partitions are announced in one event per Dagster run
    for run in runs:
        events = planned[run.run_id]
        assert len(events) == len({e.asset_key for e in events}) == 3   # 3 variables
        expected = {run.tags["dagster/asset_partition_range_start"],
                    run.tags["dagster/asset_partition_range_end"]}
        assert all((set(e.partitions_subset.get_partition_keys()) if e.partitions_subset
                    else {e.partition}) == expected for e in events)
    assert seen and seen[-1].done == 3 and seen[-1].total == 3
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    table = Damnit(folder).table()
    assert table.set_index("run").run_no.to_dict() == {2: 2, 3: 3, 4: 4}


def test_a_long_direct_reprocess_is_cut_into_dagster_runs_of_bounded_size(
        direct_setup, monkeypatch):
    """A Dagster run holds one event per value; a reprocess of many runs becomes several
    Dagster runs of at most VALUES_PER_DAGSTER_RUN values, and every run's results are
    still reported and stored."""
    from damnit.api import Damnit

    from damnit_dagster.defs import partitions

    monkeypatch.setattr(partitions, "VALUES_PER_DAGSTER_RUN", 6)   # 2 runs x 3 variables
    folder = direct_setup
    with dg.DagsterInstance.get() as instance:
        results = reprocess_direct(folder, "1-5", instance=instance)
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"damnit/trigger": TRIGGER}))
        ranges = sorted((r.tags["dagster/asset_partition_range_start"],
                         r.tags["dagster/asset_partition_range_end"]) for r in runs)

    assert ranges == [("1", "2"), ("3", "4"), ("5", "5")]
    assert_results(results, [1, 2, 3, 4, 5])
    assert Damnit(folder).table().run.tolist() == [1, 2, 3, 4, 5]


def test_a_backfill_cuts_its_runs_as_a_direct_reprocess_does(direct_setup):
    """The daemon's backfill follows the assets' BackfillPolicy: the same bound."""
    from damnit_dagster.defs.definitions import build_definitions
    from damnit_dagster.defs.partitions import VALUES_PER_DAGSTER_RUN

    defs = build_definitions(direct_setup, with_sensor=False)
    key = dg.AssetKey([f"p{PROPOSAL}", "xgm_intensity"])
    policy = defs.resolve_assets_def(key).backfill_policy
    n_variables = len(defs.resolve_assets_def(key).keys)
    assert policy.max_partitions_per_run == VALUES_PER_DAGSTER_RUN // n_variables


def test_direct_reprocess_command_shows_progress_failures_and_a_summary(direct_setup):
    folder = direct_setup
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(folder),
         "reprocess", "--direct", "2-3", "--var", "odd_only"],
        capture_output=True, text=True, timeout=300, cwd=folder,
        env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    assert "Reprocessing" in proc.stderr
    assert "r2 odd_only: failed: ValueError: run 2 is even" in proc.stdout
    assert f"p{PROPOSAL}: 2 of 2 runs processed, 1 variable failure(s)" in proc.stdout
    # what the user's code printed is in the run's process log, not on the terminal
    assert "run 2 is even" in (folder / "process_logs" / f"r2-p{PROPOSAL}.out").read_text()
    assert "Traceback" not in proc.stderr


def test_a_run_that_cannot_be_opened_is_reported_as_not_processed(direct_setup, mock_proposal):
    from damnit_dagster.ops.mockdata import proposal_dir

    folder = direct_setup
    broken = proposal_dir(mock_proposal.root, PROPOSAL) / "raw" / "r0009"
    broken.mkdir(parents=True)
    (broken / "RAW-R0009-DA01-S00000.h5").write_bytes(b"not an HDF5 file")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(folder),
         "reprocess", "--direct", "5", "9"],
        capture_output=True, text=True, timeout=300, cwd=folder,
        env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 1
    assert "r9: not processed:" in proc.stdout
    assert "r9 run_no" not in proc.stdout          # one line for the run, not one per variable
    assert f"p{PROPOSAL}: 1 of 2 runs processed, 0 variable failure(s)" in proc.stdout
    assert "not processed: r9 (see process_logs/" in proc.stderr
