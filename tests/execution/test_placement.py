"""Where variables run, seen through Dagster: limits for local variables, Slurm for
cluster=True ones (a real single-node Slurm started by scripts/start_slurm.sh)."""
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from damnit_dagster.defs.definitions import build_definitions
from damnit_dagster.storage.database import DamnitDB
from support.paths import REPO as ROOT

CONTEXT = '''
import os
import numpy as np
from damnit_ctx import Variable

@Variable(title="Trains")
def n_trains(run):
    return len(run.train_ids)

@Variable(title="Cores")
def cores(run):
    return len(os.sched_getaffinity(0))

@Variable(title="Greedy")
def greedy(run):
    return float(np.ones(3 * 1024**3 // 8).sum())   # 3 GB

@Variable(title="Heavy", cluster=True)
def heavy(run, n: "var#n_trains"):
    return n * 2 + int(os.environ.get("SLURM_JOB_ID", "0") != "0")
'''


@pytest.fixture
def folder(damnit_folder, mock_proposal):
    return damnit_folder(CONTEXT, proposal=mock_proposal.proposal, noncluster_mem="1G",
                         noncluster_cpus="1", slurm_partition="upex").root


def materialize(folder, tmp_path, job, run):
    defs = build_definitions(folder, state_dir=tmp_path / "state", with_sensor=False)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("p1234_runs", [str(run)])
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=str(run), raise_on_error=False)
    mats = {e.asset_key.path[-1] for e in result.all_events
            if e.event_type == DagsterEventType.ASSET_MATERIALIZATION}
    checks = {e.asset_check_evaluation_data.asset_key.path[-1]:
              e.asset_check_evaluation_data.description or ""
              for e in result.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION}
    return result, mats, checks


def test_a_variable_over_the_memory_limit_fails_alone_and_cpus_are_limited(folder, tmp_path):
    result, mats, checks = materialize(folder, tmp_path, "raw", 1)
    assert result.success
    assert {"n_trains", "cores"} <= mats and "greedy" not in mats
    assert "exceeded the 1 GB memory limit for non-cluster variables (noncluster_mem)" \
        in checks["greedy"]
    with DamnitDB(folder) as db:
        rows = db.run_values(1234, 1)
    assert rows["cores"]["value"] == 1          # noncluster_cpus=1
    assert rows["n_trains"]["value"] == 100
    assert "noncluster_mem" in rows["greedy"]["attributes"]


@pytest.mark.slow
def test_cluster_variables_run_in_a_slurm_job(folder, tmp_path):
    subprocess.run([str(ROOT / "scripts" / "start_slurm.sh")], check=True, timeout=300)
    result, mats, checks = materialize(folder, tmp_path, "raw_cluster", 2)
    assert result.success, checks
    assert mats == {"heavy"}
    with DamnitDB(folder) as db:
        assert db.run_values(1234, 2)["heavy"]["value"] == 201   # 2 * 100 + ran in Slurm
    log = (folder / "process_logs" / "r2-p1234.out").read_text()
    assert "----- Processing r2 (p1234) as" in log and "(job id: " in log


@pytest.mark.slow
def test_reprocess_without_a_backend_runs_local_then_cluster_variables(folder, tmp_path):
    """``damnit-dagster reprocess`` with no backend: the command executes the local run,
    then the one following the Slurm job, and reports both kinds of variables."""
    import os
    import sys
    subprocess.run([str(ROOT / "scripts" / "start_slurm.sh")], check=True, timeout=300)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster_home" / "dagster.yaml").read_text())
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(folder),
         "reprocess", "2"], capture_output=True, text=True, timeout=600, cwd=folder,
        env={**os.environ, "DAGSTER_HOME": str(home), "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    assert "r2 greedy: failed" in proc.stdout and "noncluster_mem" in proc.stdout
    assert "p1234: 1 of 1 runs processed, 1 variable failure(s)" in proc.stdout
    with DamnitDB(folder) as db:
        values = db.run_values(1234, 2)
    assert values["heavy"]["value"] == 201          # 2 * 100 trains, computed in Slurm
    assert values["n_trains"]["value"] == 100       # computed in the command's own run
    with dg.DagsterInstance.from_config(str(home)) as instance:
        jobs = sorted(r.job_name for r in instance.get_runs(
            filters=dg.RunsFilter(tags={"damnit/trigger": "reprocess-direct"})))
    assert jobs == ["all", "all_cluster"]


def test_a_context_python_evaluates_in_that_interpreter_under_the_limits(folder, tmp_path):
    import os
    import sys
    wrapper = tmp_path / "user-python"   # another interpreter, as far as the folder knows
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    with DamnitDB(folder) as db:
        db.metameta["context_python"] = str(wrapper)
    result, mats, checks = materialize(folder, tmp_path, "raw", 3)
    assert result.success
    assert {"n_trains", "cores"} <= mats
    assert "exceeded the 1 GB memory limit" in checks["greedy"]
    log = (folder / "process_logs" / "r3-p1234.out").read_text()
    assert f"python: {wrapper}" in log and os.path.exists(wrapper)
