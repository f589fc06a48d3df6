"""``reprocess --slurm``: the runs evaluated in a Slurm job array on the project's loopback
Slurm (scripts/start_slurm.sh), stored by the command on this host as each task ends."""
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from damnit_dagster.execution.slurm_array import ArraySettings, task_indices
from damnit_dagster.storage.database import DamnitDB
from support.paths import REPO

PROPOSAL = 4570
CLI = str(Path(sys.executable).parent / "damnit-dagster")

CONTEXT = """
    import os, time
    from pathlib import Path
    from damnit_ctx import Variable

    # counts the loads of this file: one per Slurm task, whatever its number of runs
    with open(Path(__file__).parent / "loads.txt", "a") as f:
        f.write(os.environ.get("SLURM_JOB_ID", "here") + "\\n")

    @Variable(title="Job")
    def job(run):
        print("evaluating in Slurm job", os.environ.get("SLURM_JOB_ID"), flush=True)
        return os.environ.get("SLURM_JOB_ID", "none")

    @Variable(title="Array task")
    def task(run):
        return os.environ.get("SLURM_ARRAY_TASK_ID", "none")

    @Variable(title="Started")
    def started(run):
        t = time.time()
        time.sleep(float(os.environ.get("DAMNIT_TEST_SLEEP", "2")))
        return t

    @Variable(title="Ended")
    def ended(run, started: "var#started"):
        return time.time()
"""

SLEEPY = """
    import time
    from damnit_ctx import Variable

    @Variable(title="Sleepy")
    def sleepy(run, run_no: "meta#run_number"):
        print("sleepy started", flush=True)
        time.sleep(300 if run_no in SLOW else 1)
        return run_no

    SLOW = {RUNS}
"""


@pytest.fixture(scope="module")
def slurm():
    """A running Slurm (started or just checked by the project's script)."""
    subprocess.run([str(REPO / "scripts" / "start_slurm.sh")], check=True, timeout=300)


@pytest.fixture
def slurm_folder(tmp_path, damnit_folder, mock_proposal, monkeypatch, slurm):
    """``make(context, **settings)``: a DAMNIT folder of proposal 4570 (runs 1-6) with
    one task slot per core, its own Dagster home, and no backend."""
    from damnit_dagster.ops.mockdata import make_proposal

    make_proposal(mock_proposal.root, PROPOSAL, range(1, 7), ntrains=5, runs_without_proc=())
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    def make(context, **settings):
        settings = {"noncluster_cpus": "1", "noncluster_mem": "1G", "concurrent_jobs": "2",
                    **settings}
        return damnit_folder(context, proposal=PROPOSAL, **settings).root
    return make


def cli(folder, *args, **kwargs):
    return subprocess.run([CLI, "--dir", str(folder), *args], capture_output=True, text=True,
                          timeout=300, cwd=folder, env={**os.environ, "MPLBACKEND": "Agg"},
                          **kwargs)


def values(folder) -> dict[int, dict]:
    """run -> {variable: value} as damnit.api reads them."""
    from damnit.api import Damnit

    table = Damnit(folder).table(with_titles=False)
    return {int(row["run"]): row for row in table.to_dict("records")}


def array_tasks(folder) -> list[dict]:
    """``scontrol`` records of this folder's job array tasks (pending ranges expanded)."""
    from damnit_dagster.execution.slurm import parse_job_line

    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True)
    tasks = []
    for line in out.stdout.splitlines():
        info = parse_job_line(line)
        if info.get("JobName") == f"p{PROPOSAL}-damnit" and info.get("WorkDir") == str(folder):
            tasks += [{**info, "index": i} for i in task_indices(info.get("ArrayTaskId", ""))]
    return tasks


def wait_until(condition, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def max_overlap(intervals) -> int:
    """The most intervals open at one time."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def test_array_settings_deal_runs_round_robin_into_tasks():
    assert ArraySettings(slots=2).chunks([1, 2, 3, 4, 5]) == [[1, 3, 5], [2, 4]]
    assert ArraySettings(slots=15).chunks([7, 8]) == [[7], [8]]
    assert ArraySettings(slots=2, runs_per_task=1).chunks([1, 2, 3]) == [[1], [2], [3]]
    assert ArraySettings(slots=1, runs_per_task=2).chunks([1, 2, 3]) == [[1, 3], [2]]
    assert task_indices("3") == [3]
    assert task_indices("2-5%2") == [2, 3, 4, 5]
    assert task_indices("1,4,6-7") == [1, 4, 6, 7]


@pytest.mark.slow
def test_reprocess_slurm_stores_every_run_from_one_throttled_job_array(slurm_folder):
    folder = slurm_folder(CONTEXT, slurm_runs_per_task="1")
    proc = cli(folder, "reprocess", "--slurm", "all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"p{PROPOSAL}: 6 of 6 runs processed, 0 variable failure(s)" in proc.stdout

    stored = values(folder)
    assert sorted(stored) == [1, 2, 3, 4, 5, 6]
    # each run computed inside its own task of one array, named as DAMNIT names it
    jobs = {run: row["job"] for run, row in stored.items()}
    assert "none" not in jobs.values() and len(set(jobs.values())) == 6
    tasks = {t["JobId"]: t for t in array_tasks(folder)}
    assert set(jobs.values()) <= set(tasks)
    array_ids = {tasks[j]["ArrayJobId"] for j in jobs.values()}
    assert len(array_ids) == 1
    array_id = array_ids.pop()
    # only that array was submitted: the command's own, sent before Dagster had started,
    # which its Dagster run's step followed
    assert {t["ArrayJobId"] for t in tasks.values()} == {array_id}
    assert all(t["JobName"] == f"p{PROPOSAL}-damnit" and t["NumCPUs"] == "1"
               for t in tasks.values())
    # concurrent_jobs 2: never more than two tasks at once (the node has room for more),
    # and two did run at once
    assert max_overlap([(row["started"], row["ended"]) for row in stored.values()]) == 2
    # the Dagster run that stored them names the array
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        logs = [entry.user_message for entry in instance.all_logs(run.run_id)]
    assert run.tags["damnit/slurm_jobs"] == array_id
    assert any(f"Followed Slurm job array {array_id}" in line for line in logs)
    assert run.tags["damnit/executor"] == "slurm"
    assert run.status == dg.DagsterRunStatus.SUCCESS
    # per-run logs with DAMNIT's header naming the task, the user's output and a summary
    for r, row in stored.items():
        log = (folder / "process_logs" / f"r{r}-p{PROPOSAL}.out").read_text()
        assert f"Processing r{r} (p{PROPOSAL})" in log
        assert f"(job id: {array_id}_{int(row['task'])}, cluster: " in log
        assert f"evaluating in Slurm job {row['job']}" in log
        assert f"----- r{r} done in" in log
    # nothing of the array's own files is left behind
    assert sorted(p.name for p in (folder / "extracted_data").iterdir()
                  if not p.name.endswith(".lock")) == [f"p{PROPOSAL}_r{r}.h5" for r in range(1, 7)]
    assert [p.name for p in (folder / "process_logs").iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_db_config_makes_slurm_the_default_and_a_task_loads_the_context_once(slurm_folder):
    folder = slurm_folder(CONTEXT)
    assert cli(folder, "db-config", "reprocess_executor", "slurm").returncode == 0
    assert cli(folder, "db-config", "slurm_runs_per_task", "3").returncode == 0
    (folder / "loads.txt").unlink(missing_ok=True)
    proc = subprocess.run([CLI, "--dir", str(folder), "reprocess", "all"], capture_output=True,
                          text=True, timeout=300, cwd=folder,
                          env={**os.environ, "DAMNIT_TEST_SLEEP": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stored = values(folder)
    # two tasks of three runs each, dealt in turn, each loading the context file once
    assert {r: row["task"] for r, row in stored.items()} == {
        1: "0", 3: "0", 5: "0", 2: "1", 4: "1", 6: "1"}
    # (the file is also loaded here, to describe its variables)
    loads = [job for job in (folder / "loads.txt").read_text().split() if job != "here"]
    assert len(loads) == 2
    # --local overrides the setting
    proc = cli(folder, "reprocess", "--local", "2", "--var", "job")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert values(folder)[2]["job"] == "none"


def started_sleeping(folder, run) -> bool:
    log = folder / "process_logs" / f"r{run}-p{PROPOSAL}.out"
    return log.exists() and "sleepy started" in log.read_text()


@pytest.mark.slow
def test_a_cancelled_task_leaves_only_its_run_unprocessed(slurm_folder):
    folder = slurm_folder(SLEEPY.replace("{RUNS}", "{3}"), slurm_runs_per_task="1",
                          concurrent_jobs="3")
    command = subprocess.Popen([CLI, "--dir", str(folder), "reprocess", "--slurm", "all"],
                               cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_until(lambda: started_sleeping(folder, 3), what="run 3's task to start")
        task = next(t for t in array_tasks(folder) if t["index"] == 2)   # runs 1..6: task 2
        subprocess.run(["scancel", f"{task['ArrayJobId']}_2"], check=True)
        out, err = command.communicate(timeout=120)
    finally:
        command.kill()
    assert command.returncode == 1, out + err
    task_id = f"{task['ArrayJobId']}_2"
    assert f"r3: not processed: JobFailed: Slurm job {task_id} (p{PROPOSAL}-damnit) was " \
           "cancelled" in out
    assert f"p{PROPOSAL}: 5 of 6 runs processed" in out
    assert "not processed: r3 (see process_logs/" in err
    stored = values(folder)
    assert {r: row["sleepy"] for r, row in stored.items() if r != 3} == {
        1: 1, 2: 2, 4: 4, 5: 5, 6: 6}
    assert "was cancelled" in (folder / "process_logs" / f"r3-p{PROPOSAL}.out").read_text()


@pytest.mark.slow
def test_a_refused_array_fails_at_once_with_slurms_message_and_changes_nothing(slurm_folder):
    folder = slurm_folder(SLEEPY.replace("{RUNS}", "set()"), slurm_partition="nosuchpart")
    proc = cli(folder, "reprocess", "--slurm", "1-6")
    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if "not processed" in line]
    # one line: the runs, Slurm's words, and the options it refused (slurm_time per run
    # times the 3 runs of a task)
    assert len(lines) == 1
    assert lines[0].startswith(
        "r1, r2, r3, r4, r5, r6: not processed: No run was processed: sbatch refused the job "
        "array for 6 runs (--time 06:00:00 --partition nosuchpart): ")
    assert lines[0].endswith("Invalid partition name specified")
    assert sorted(p.name for p in (folder / "extracted_data").iterdir()) == []
    with DamnitDB(folder / "runs.sqlite") as db:
        assert db.conn.execute("SELECT COUNT(*) FROM run_variables").fetchone()[0] == 0
    assert array_tasks(folder) == []


@pytest.mark.slow
def test_ctrl_c_cancels_the_array(slurm_folder):
    folder = slurm_folder(SLEEPY.replace("{RUNS}", "{1, 2, 3, 4, 5, 6}"),
                          slurm_runs_per_task="1")
    command = subprocess.Popen([CLI, "--dir", str(folder), "reprocess", "--slurm", "all"],
                               cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_until(lambda: started_sleeping(folder, 1) and started_sleeping(folder, 2),
                   what="two tasks to start")
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=120)
    finally:
        command.kill()
    assert command.returncode != 0
    # the array goes out before Dagster has started: Ctrl-C may come before its run did
    assert "r1, r2, r3, r4, r5, r6: not processed: interrupted (Ctrl-C" in out
    tasks = array_tasks(folder)
    assert tasks and all(t["JobState"] == "CANCELLED" for t in tasks), tasks
    assert values(folder) == {} or all(row["sleepy"] is None for row in values(folder).values())


@pytest.mark.slow
def test_with_the_backend_running_a_backfill_owns_the_array_and_ctrl_c_cancels_both(
        slurm_folder, tmp_path, monkeypatch):
    from support.backend import running_backend

    folder = slurm_folder(SLEEPY.replace("{RUNS}", "{5, 6}"), slurm_runs_per_task="1",
                          concurrent_jobs="4")
    monkeypatch.delenv("DAGSTER_HOME")
    with running_backend(folder, tmp_path / "home") as backend:
        backend.wait_for_sensor()
        command = subprocess.Popen([CLI, "--dir", str(folder), "reprocess", "--slurm", "all"],
                                   cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            wait_until(lambda: values(folder).keys() >= {1, 2, 3, 4}
                       and started_sleeping(folder, 5), what="runs 1-4 stored", timeout=180)
            command.send_signal(signal.SIGINT)
            # the backfill is cancelled, its run terminated by the daemon: allow for a
            # busy machine (the command waits up to a minute for the run to stop)
            out, err = command.communicate(timeout=300)
        finally:
            command.kill()
        with backend.instance() as instance:
            (run,) = instance.get_runs()
            backfill = instance.get_backfill(run.tags["dagster/backfill"])
    assert command.returncode != 0
    # the backfill's Dagster run submitted the array and stored what finished, run by run
    assert run.tags["damnit/executor"] == "slurm" and run.tags["damnit/slurm_jobs"]
    assert {r: row["sleepy"] for r, row in values(folder).items()} == {1: 1, 2: 2, 3: 3, 4: 4}
    # Ctrl-C cancelled the backfill, its Dagster run and the array's remaining tasks
    assert backfill.status.value in ("CANCELED", "CANCELING")
    assert run.status == dg.DagsterRunStatus.CANCELED
    tasks = {t["index"]: t["JobState"] for t in array_tasks(folder)}
    assert tasks[4] == tasks[5] == "CANCELLED", tasks


@pytest.mark.slow
def test_damnit_gui_sees_each_run_running_in_its_array_task(slurm_folder, kafka_broker):
    from damnit.backend.db import MsgKind

    from support.gui_messages import consume

    folder = slurm_folder(CONTEXT, gui_brokers=kafka_broker)
    proc = subprocess.run([CLI, "--dir", str(folder), "reprocess", "--slurm", "2", "--var",
                           "job"], capture_output=True, text=True, timeout=300, cwd=folder,
                          env={**os.environ, "DAMNIT_TEST_SLEEP": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with DamnitDB(folder / "runs.sqlite") as db:
        db_id = db.db_id
    messages = consume(kafka_broker, db_id, MsgKind.processing_finished)
    states = [m["data"] for m in messages if m["msg_kind"] == "processing_state_set"]
    task = array_tasks(folder)[0]
    assert [s["status"] for s in states] == ["PENDING", "RUNNING"]
    assert states[1]["slurm_job_id"] == f"{task['ArrayJobId']}_0"
    assert states[1]["hostname"] == task["NodeList"]
    assert len({s["processing_id"] for s in states}) == 1
    assert [m["msg_kind"] for m in messages][-2:] == ["run_values_updated",
                                                      "processing_finished"]


@pytest.mark.slow
def test_stale_variables_recomputed_in_slurm_read_their_inputs_from_the_run_files(
        slurm_folder):
    folder = slurm_folder(CONTEXT)
    env = {**os.environ, "DAMNIT_TEST_SLEEP": "0"}
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=300,
                            cwd=folder, env=env)
    proc = run([CLI, "--dir", str(folder), "reprocess", "--local", "all"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    before = values(folder)
    context = folder / "context.py"
    context.write_text(context.read_text().replace("return time.time()\n",
                                                   "return time.time() + 1e6\n"))
    proc = run([CLI, "--dir", str(folder), "reprocess", "--stale", "--slurm", "all"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = values(folder)
    for r in range(1, 7):
        # only the edited variable was computed, in a Slurm task, from the stored input
        assert after[r]["ended"] > 1e6 + before[r]["ended"] - 1
        assert {k: after[r][k] for k in ("job", "task", "started")} == {
            k: before[r][k] for k in ("job", "task", "started")}
        log = (folder / "process_logs" / f"r{r}-p{PROPOSAL}.out").read_text()
        assert "(job id: " in log.rsplit("----- Processing", 1)[1]


def test_the_run_queue_starts_one_slurm_reprocess_run_at_a_time(tmp_path):
    """A long reprocess on Slurm is several Dagster runs, each with its own array: the
    instance's run queue starts one at a time, so concurrent_jobs still bounds the tasks."""
    from damnit_dagster.defs import tags

    (tmp_path / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": tags.EXECUTOR, "value": "slurm", "limit": 1} in limits
