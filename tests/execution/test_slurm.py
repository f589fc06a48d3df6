"""cluster=True variables in real Slurm jobs, against the single-node Slurm that
scripts/start_slurm.sh starts (installing it if needed; it needs root, as in CI)."""
import io
import re
import subprocess
import textwrap
import threading
import time
import uuid
from pathlib import Path

import h5py
import pytest

from damnit_dagster.execution.slurm import (
    LOST,
    JobFailed,
    SlurmError,
    SlurmJob,
    SlurmSettings,
    evaluate_in_slurm,
    job_info,
    wait,
)
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.writer import store_fragment
from support.paths import REPO as ROOT

CONTEXT = textwrap.dedent("""
    import os
    from damnit_ctx import Variable

    @Variable(title="Trains")
    def n_trains(run):
        return len(run.train_ids)

    @Variable(title="Partition", cluster=True)
    def partition(run):
        print("cluster variable running in job", os.environ["SLURM_JOB_ID"])
        return os.environ["SLURM_JOB_PARTITION"]

    @Variable(title="Reservation", cluster=True)
    def reservation(run):
        return os.environ.get("SLURM_JOB_RESERVATION", "none")

    @Variable(title="Double trains", cluster=True)
    def double_trains(run, n: "var#n_trains"):
        return 2 * n
""")

SLEEPY = textwrap.dedent("""
    import time
    from damnit_ctx import Variable

    @Variable(title="Sleepy", cluster=True)
    def sleepy(run):
        print("sleepy started", flush=True)
        time.sleep(120)
        return 1
""")


@pytest.fixture(scope="session")
def slurm():
    """A running Slurm (started or just checked by the project's script)."""
    subprocess.run([str(ROOT / "scripts" / "start_slurm.sh")], check=True, timeout=300)


@pytest.fixture
def damnit_dir(damnit_folder, mock_proposal, slurm):
    return damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root


@pytest.fixture
def reservation():
    """A reservation of one core for root, deleted afterwards (the other core stays free
    for everyone else's jobs)."""
    name = f"damnit_test_{uuid.uuid4().hex[:8]}"
    subprocess.run(["scontrol", "create", "reservation", f"ReservationName={name}",
                    "StartTime=now", "Duration=10", "Users=root", "Nodes=ALL", "CoreCnt=1",
                    "Flags=IGNORE_JOBS"], check=True, capture_output=True, text=True)
    yield name
    subprocess.run(["scontrol", "delete", f"ReservationName={name}"], check=True)


class JobIdEcho(io.StringIO):
    """An echo stream that notes the id of the submitted job."""

    def __init__(self):
        super().__init__()
        self.job_id = None
        self.submitted = threading.Event()

    def write(self, text):
        m = re.search(r"Submitted Slurm job (\d+)", text)
        if m:
            self.job_id = m[1]
            self.submitted.set()
        return super().write(text)


def _run_in_thread(fn):
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    return t, box


def test_settings_reservation_wins_and_clusters_only_when_set():
    both = SlurmSettings.from_settings({"slurm_partition": "upex",
                                        "slurm_reservation": "upex_001234"})
    assert both.options() == ["--time", "02:00:00", "--reservation", "upex_001234"]
    part = SlurmSettings.from_settings({"slurm_partition": "upex", "slurm_time": "0:30:00",
                                        "slurm_clusters": "maxwell"})
    assert part.options() == ["--clusters", "maxwell", "--time", "0:30:00",
                              "--partition", "upex"]
    # No partition set and no EuXFEL netgroup: the cluster's default partition.
    assert SlurmSettings.from_settings({"slurm_reservation": ""}).options() == [
        "--time", "02:00:00"]


def test_cluster_variables_run_in_a_named_job_and_are_stored(damnit_dir, mock_proposal):
    echo = JobIdEcho()
    ev = evaluate_in_slurm(damnit_dir, mock_proposal.proposal, 1, "all", echo=echo,
                           settings={"slurm_partition": "upex"})
    status = {n: v["status"] for n, v in ev.report["variables"].items()}
    # The cluster variables and their dependency ran in the job.
    assert status == {"n_trains": "ok", "partition": "ok", "reservation": "ok",
                      "double_trains": "ok"}

    info = job_info(SlurmJob(echo.job_id, None, "", ev.log))
    assert info["JobName"] == "r1-p1234-damnit"
    assert info["Partition"] == "upex"
    assert info["JobState"] == "COMPLETED"
    assert Path(info["StdOut"]) == damnit_dir / "process_logs" / "r1-p1234.out"

    summaries = store_fragment(damnit_dir, mock_proposal.proposal, 1, ev.fragment)
    assert summaries["partition"] == "upex"
    assert summaries["double_trains"] == 200
    with h5py.File(damnit_dir / "extracted_data" / "p1234_r1.h5") as f:
        assert f["partition/data"][()].decode() == "upex"
        assert f[".reduced/double_trains"][()] == 200
    with DamnitDB(damnit_dir) as db:
        rows = db.run_values(mock_proposal.proposal, 1)
        assert rows["partition"]["value"] == "upex"
        assert rows["double_trains"]["value"] == 200

    log = ev.log.read_text()
    assert re.search(r"----- Processing r1 \(p1234\) as root on \S+ "
                     rf"\(job id: {echo.job_id}, cluster: \w+\) -----", log)
    assert f"cluster variable running in job {echo.job_id}" in log
    # The job's output, header included, also reached the echo (Dagster's compute log).
    assert f"(job id: {echo.job_id}, cluster: " in echo.getvalue()
    assert f"cluster variable running in job {echo.job_id}" in echo.getvalue()


def test_reservation_wins_over_partition(damnit_dir, mock_proposal, reservation):
    echo = JobIdEcho()
    ev = evaluate_in_slurm(damnit_dir, mock_proposal.proposal, 2, "raw", echo=echo,
                           variables=["reservation", "partition"],
                           settings={"slurm_partition": "upex",
                                     "slurm_reservation": reservation})
    info = job_info(SlurmJob(echo.job_id, None, "", ev.log))
    assert info["Reservation"] == reservation
    assert info["Partition"] == "debug"          # the partition setting was not used
    summaries = store_fragment(damnit_dir, mock_proposal.proposal, 2, ev.fragment)
    assert summaries["reservation"] == reservation


def test_a_cancelled_job_keeps_what_it_finished(damnit_dir, mock_proposal):
    (damnit_dir / "context.py").write_text(textwrap.dedent("""
        import time
        from damnit_ctx import Variable

        @Variable(title="Early", cluster=True)
        def early(run):
            return 42

        @Variable(title="Sleepy", cluster=True)
        def sleepy(run, e: "var#early"):
            print("sleepy started", flush=True)
            time.sleep(120)

        @Variable(title="Late", cluster=True)
        def late(run, s: "var#sleepy" = None):
            return 2
    """))
    echo = JobIdEcho()
    thread, box = _run_in_thread(lambda: evaluate_in_slurm(
        damnit_dir, mock_proposal.proposal, 3, "raw", echo=echo, poll=0.1))
    assert echo.submitted.wait(30)
    log = damnit_dir / "process_logs" / "r3-p1234.out"
    deadline = time.monotonic() + 60
    while "sleepy started" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    subprocess.run(["scancel", echo.job_id], check=True)
    thread.join(60)

    evaluation = box["result"]
    cancelled = f"Slurm job {echo.job_id} (r3-p1234-damnit) was cancelled"
    variables = evaluation.report["variables"]
    assert variables["early"]["status"] == "ok"
    assert variables["sleepy"]["error"] == f"{cancelled} while computing this variable"
    assert variables["late"]["error"] == f"not computed: {cancelled} while computing 'sleepy'"
    with h5py.File(evaluation.fragment) as f:
        assert f["early/data"][()] == 42
    assert f"{cancelled}; the variables it had finished are kept" in log.read_text()
    assert list((damnit_dir / "extracted_data").iterdir()) == [evaluation.fragment]


def test_failed_job_names_exit_code_and_error(damnit_dir, mock_proposal):
    (damnit_dir / "context.py").write_text("from damnit_ctx import Variable\n"
                                           "@Variable(cluster=True)\n"
                                           "def a(run, x: 'var#nope'):\n    return 1\n")
    with pytest.raises(JobFailed, match=r"\(r1-p1234-damnit\) FAILED with exit code 1: .*nope"):
        evaluate_in_slurm(damnit_dir, mock_proposal.proposal, 1, echo=None)


def test_sbatch_refusal_names_slurm_reason(damnit_dir, mock_proposal):
    with pytest.raises(SlurmError, match=r"--partition nosuch.*Invalid partition name"):
        evaluate_in_slurm(damnit_dir, mock_proposal.proposal, 1, echo=None,
                          settings={"slurm_partition": "nosuch"})
    assert "Invalid partition name" in (
        damnit_dir / "process_logs" / "r1-p1234.out").read_text()


def test_job_unknown_to_slurm_is_lost(slurm, tmp_path):
    job = SlurmJob("987654321", None, "r9-p1234-damnit", tmp_path / "r9.out")
    end = wait(job, poll=0.05, lost_after=0.3)
    assert end.state == LOST
    assert end.describe().startswith("Slurm job 987654321 (r9-p1234-damnit) was lost")
