"""The fork-server run launcher: Dagster runs started from a warm process keep Dagster's
semantics (status and events from the worker, compute logs, cancellation, health)."""
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from damnit_dagster.plugins.launcher import WORKER_TAG, ForkServerRunLauncher
from support.backend import write_instance_config
from support.paths import TESTS

LAUNCHER = {"run_launcher": {"module": "damnit_dagster.plugins.launcher",
                             "class": "ForkServerRunLauncher",
                             "config": {"preload": ["dagster._cli.api"]}}}


@dg.op(config_schema={"seconds": float})
def work(context):
    print(f"working for {context.op_config['seconds']} s")
    time.sleep(context.op_config["seconds"])


@dg.job(executor_def=dg.in_process_executor)
def work_job():
    work()


@pytest.fixture
def instance(tmp_path, monkeypatch):
    # the run workers import this module (work_job) by name, and with it ``support``
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), str(TESTS)]))
    write_instance_config(tmp_path, LAUNCHER)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def launch(instance, seconds):
    recon = dg.reconstructable(work_job)
    run = instance.create_run_for_job(
        job_def=work_job, job_code_origin=recon.get_python_origin(),
        run_config={"ops": {"work": {"config": {"seconds": seconds}}}})
    instance.launch_run(run.run_id, workspace=None)
    return run.run_id


def wait_status(instance, run_id, statuses, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.status in statuses:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {run.status} after {timeout} s")


def messages(instance, run_id):
    return [(e.dagster_event.message if e.dagster_event else None) or e.user_message
            for e in instance.all_logs(run_id)]


def test_a_forked_run_reports_like_a_normal_run_worker(instance, tmp_path):
    assert isinstance(instance.run_launcher, ForkServerRunLauncher)
    run_id = launch(instance, 0.1)
    run = wait_status(instance, run_id, {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE})
    assert run.status == dg.DagsterRunStatus.SUCCESS
    pid = int(run.tags[WORKER_TAG].split(":")[0])
    log = messages(instance, run_id)
    assert any(f"Forked run worker (pid {pid}) from the warm process" in m for m in log)
    assert f"Started process for run (pid: {pid})." in log
    captured = list((tmp_path / "storage").rglob("*.out"))
    assert any("working for 0.1 s" in p.read_text() for p in captured), captured
    # a second run is forked from the same warm process
    second = wait_status(instance, launch(instance, 0.1), {dg.DagsterRunStatus.SUCCESS})
    assert second.tags[WORKER_TAG] != run.tags[WORKER_TAG]


def test_terminate_cancels_the_run(instance):
    run_id = launch(instance, 60)
    wait_status(instance, run_id, {dg.DagsterRunStatus.STARTED})
    assert instance.run_launcher.terminate(run_id)
    run = wait_status(instance, run_id, {dg.DagsterRunStatus.CANCELED}, timeout=30)
    assert run.is_finished


def test_a_killed_worker_is_reported_by_the_health_check(instance):
    run_id = launch(instance, 60)
    run = wait_status(instance, run_id, {dg.DagsterRunStatus.STARTED})
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status == dg._core.launcher.WorkerStatus.RUNNING
    pid = int(run.tags[WORKER_TAG].split(":")[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = instance.run_launcher.check_run_worker_health(run)
        if health.status != dg._core.launcher.WorkerStatus.RUNNING:
            break
        time.sleep(0.1)
    assert health.status == dg._core.launcher.WorkerStatus.FAILED
    assert f"run worker process {pid} is gone" in health.msg
