"""Retention: Dagster runs older than ``retention_days`` lose their logs (or go, once
superseded) while every run number keeps its latest value, check and staleness."""
import datetime
from pathlib import Path

import dagster as dg
import pytest

from damnit_dagster.defs.definitions import build_definitions
from damnit_dagster.plugins import retention
from damnit_dagster.plugins.retention import Trimmed, trim
from damnit_dagster.reprocess.direct import reprocess_direct
from damnit_dagster.storage.settings import SettingError, parse_setting, retention_days
from support.paths import REPO
from support.reprocess_context import CONTEXT

PROPOSAL = 3456
CHECK = dg.DagsterEventType.ASSET_CHECK_EVALUATION


@pytest.fixture
def folder(tmp_path, damnit_folder, mock_proposal, monkeypatch):
    from damnit_dagster.ops.mockdata import make_proposal

    make_proposal(mock_proposal.root, PROPOSAL, range(1, 5), ntrains=5, runs_without_proc=())
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return damnit_folder(CONTEXT, proposal=PROPOSAL).root


def partition_state(instance) -> dict:
    """Per variable: its materialised runs, and per run the latest materialisation's run,
    code and data versions, and the latest check's run and outcome: what the UI's status,
    staleness and lineage views read."""
    state = {}
    for key in instance.get_asset_keys():
        if key.path[0] != f"p{PROPOSAL}" or key.path[-1] == "context.py":
            continue
        latest = {}
        for run in sorted(instance.get_materialized_partitions(key)):
            (record,) = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[run]), limit=1).records
            tags = record.asset_materialization.tags
            latest[run] = (record.run_id, tags["dagster/code_version"],
                           tags["dagster/data_version"])
        state[key] = latest
    checks = {}
    for record in instance.get_event_records(dg.EventRecordsFilter(CHECK), ascending=True):
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        checks[(evaluation.asset_key, evaluation.partition)] = (record.run_id,
                                                                evaluation.passed)
    state["checks"] = checks
    return state


def test_trim_deletes_superseded_runs_and_keeps_every_partitions_latest_state(folder,
                                                                            monkeypatch):
    monkeypatch.setattr(retention, "DELETE_CHUNK", 7)   # several DELETEs per Dagster run
    with dg.DagsterInstance.get() as instance:
        reprocess_direct(folder, "1-4", instance=instance)
        (first,) = instance.get_runs()
        reprocess_direct(folder, "1-4", instance=instance)    # supersedes every value
        reprocess_direct(folder, "2", variables=["xgm_intensity"], instance=instance)
        second, third = [r for r in instance.get_runs() if r.run_id != first.run_id]
        before = partition_state(instance)
        compute_logs = Path(instance.root_directory) / "storage" / first.run_id
        assert compute_logs.is_dir()

        assert trim(instance, 1) == Trimmed()     # nothing is a day old
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)
        done = trim(instance, 1, now=later)

        assert done.deleted_runs == 1 and done.trimmed_runs == 2 and done.events > 0
        assert instance.get_run_by_id(first.run_id) is None
        wal = Path(instance.root_directory) / "history" / "runs" / "index.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0   # VACUUM's copy checkpointed
        assert instance.all_logs(first.run_id) == []
        assert not compute_logs.exists()
        # the runs holding a latest value keep only their asset events (no log lines)
        for run in (second, third):
            kinds = {e.dagster_event.event_type_value if e.dagster_event else "log line"
                     for e in instance.all_logs(run.run_id)}
            assert kinds <= {"ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION",
                             "ASSET_MATERIALIZATION_PLANNED"}, kinds
            assert "ASSET_MATERIALIZATION" in kinds
        # what the UI shows of every variable and run number is unchanged
        after = partition_state(instance)
        assert after == before
        assert after["checks"] and all(run_id != first.run_id
                                       for run_id, _ in after["checks"].values())

        # and the instance still works: reprocessing stores and reports as before
        results = reprocess_direct(folder, "3", instance=instance)
        assert set(results[3].ok) == {"run_no", "xgm_intensity", "odd_only"}


def test_retention_setting_and_schedule(folder):
    assert retention_days(None) == 30
    assert retention_days("7") == 7 and retention_days("0.5") == 0.5
    assert retention_days("never") is None
    assert parse_setting("retention_days", " Never ") == "never"
    for bad in ("0", "soon"):
        with pytest.raises(SettingError, match="retention_days"):
            parse_setting("retention_days", bad)
    defs = build_definitions(folder, with_sensor=False)
    schedule = defs.resolve_schedule_def("retention")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "trim_instance"
