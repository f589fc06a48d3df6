"""Non-cluster variables run under CPU-affinity and memory limits set by the kernel."""
import io
import os
import textwrap

import h5py
import pytest

from damnit_dagster.execution.context_python import evaluate_local
from damnit_dagster.execution.evaluator import ExecutionError
from damnit_dagster.execution.limits import Limits
from damnit_dagster.storage.settings import SettingError
from damnit_dagster.storage.writer import store_fragment

CONTEXT = textwrap.dedent("""
    import os
    import numpy as np
    from damnit_ctx import Variable

    @Variable(title="Trains")
    def n_trains(run):
        print("counting trains")
        return len(run.train_ids)

    @Variable(title="Cores")
    def cores(run):
        return len(os.sched_getaffinity(0))

    @Variable(title="Greedy")
    def greedy(run):
        big = np.ones(3 * 1024**3 // 8)   # 3 GB
        return float(big.sum())

    @Variable(title="Needs greedy")
    def after_greedy(run, g: "var#greedy"):
        return g + 1

    @Variable(title="Heavy", cluster=True)
    def heavy(run):
        return 42

    @Variable(title="After heavy")
    def after_heavy(run, h: "var#heavy"):
        return h + 1
""")


@pytest.fixture
def damnit_dir(damnit_folder, mock_proposal):
    return damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root


def test_limits_from_settings_defaults_and_caps():
    cores = len(os.sched_getaffinity(0))
    default = Limits.from_settings({})
    assert default.cpus == min(4, cores)
    assert default.mem == 25 * 1024**3
    assert default.mem_text == "25 GB"
    small = Limits.from_settings({"noncluster_cpus": "1", "noncluster_mem": "512M"})
    assert (small.cpus, small.mem, small.mem_text) == (1, 512 * 1024**2, "512 MB")
    assert Limits.from_settings({"noncluster_cpus": "64"}).cpus == cores
    assert Limits.from_settings({"noncluster_mem": "50G"}).mem_text == "50 GB"
    with pytest.raises(SettingError, match="noncluster_mem"):
        Limits.from_settings({"noncluster_mem": "lots"})
    with pytest.raises(SettingError, match="noncluster_cpus"):
        Limits.from_settings({"noncluster_cpus": "0"})


def test_variable_over_memory_limit_fails_alone(damnit_dir, mock_proposal):
    echo = io.StringIO()
    ev = evaluate_local(damnit_dir, mock_proposal.proposal, 1, "all", echo=echo,
                        settings={"noncluster_mem": "2G", "noncluster_cpus": "1"})
    status = {n: v["status"] for n, v in ev.report["variables"].items()}
    assert status["n_trains"] == "ok"
    assert status["cores"] == "ok"
    assert status["greedy"] == "error"
    assert status["after_greedy"] == "error"     # its dependency failed, nothing else
    assert "heavy" not in status                 # cluster variables are not run here,
    assert "after_heavy" not in status           # nor those depending on them
    greedy_error = ev.report["variables"]["greedy"]["error"]
    assert greedy_error.startswith("variable 'greedy' exceeded the 2 GB memory limit "
                                   "for non-cluster variables (noncluster_mem)")

    # The limit's message is what gets stored, next to the sibling's values.
    summaries = store_fragment(damnit_dir, mock_proposal.proposal, 1, ev.fragment)
    assert summaries["n_trains"] == 100
    assert summaries["cores"] == 1               # the CPU limit held inside the variable
    with h5py.File(damnit_dir / "extracted_data" / "p1234_r1.h5") as f:
        assert f[".errors/greedy"][()].decode().startswith(
            "variable 'greedy' exceeded the 2 GB memory limit")
        assert f[".reduced/n_trains"][()] == 100

    # The user's print and DAMNIT's header reach the process log and the echo.
    log = (damnit_dir / "process_logs" / "r1-p1234.out").read_text()
    assert "----- Processing r1 (p1234) as " in log
    assert "limits: 1 CPU cores, 2 GB memory" in log
    assert "counting trains" in log
    assert "counting trains" in echo.getvalue()
    assert oct(os.stat(damnit_dir / "process_logs").st_mode & 0o777) == "0o777"
    assert oct(os.stat(damnit_dir / "process_logs" / "r1-p1234.out").st_mode & 0o777) == "0o666"


def test_killed_evaluation_keeps_what_finished_and_names_the_limits(damnit_dir, mock_proposal):
    (damnit_dir / "context.py").write_text(textwrap.dedent("""
        import os, signal
        from damnit_ctx import Variable

        @Variable()
        def before(run):
            return 7

        @Variable()
        def boom(run, b: "var#before"):
            os.kill(os.getpid(), signal.SIGKILL)

        @Variable()
        def after(run, b: "var#boom"):
            return 1
    """))
    evaluation = evaluate_local(damnit_dir, mock_proposal.proposal, 2, "raw", echo=None,
                                settings={"noncluster_mem": "3G"})
    variables = evaluation.report["variables"]
    assert variables["before"]["status"] == "ok"
    msg = variables["boom"]["error"]
    assert "killed by signal 9 (SIGKILL)" in msg and "3 GB memory, noncluster_mem" in msg
    assert "while computing this variable" in msg
    assert variables["after"]["error"].startswith("not computed: the process evaluating run 2 "
                                                  "was killed by signal 9")
    with h5py.File(evaluation.fragment) as f:
        assert f["before/data"][()] == 7
        assert "killed by signal 9" in f[".errors/boom"][()].decode()
    # Nothing half-written is left behind: only the completed fragment.
    assert list((damnit_dir / "extracted_data").iterdir()) == [evaluation.fragment]
    assert "the variables it had finished are kept" in (
        damnit_dir / "process_logs" / "r2-p1234.out").read_text()


def test_broken_context_is_a_clear_failure(damnit_dir, mock_proposal):
    (damnit_dir / "context.py").write_text("from damnit_ctx import Variable\n"
                                           "@Variable()\ndef a(run, x: 'var#nope'):\n"
                                           "    return 1\n")
    with pytest.raises(ExecutionError, match=r"exited with status 1: .*nope"):
        evaluate_local(damnit_dir, mock_proposal.proposal, 1, echo=None)


def test_limit_too_small_for_the_runner_itself(damnit_dir, mock_proposal):
    with pytest.raises(ExecutionError) as info:
        evaluate_local(damnit_dir, mock_proposal.proposal, 1, echo=None,
                       settings={"noncluster_mem": "20M"})
    assert "(out of memory: the limit for non-cluster variables is 20 MB, noncluster_mem)" \
        in str(info.value)


def test_concurrent_evaluations_get_the_least_used_cores():
    """A process's evaluations running at once are pinned to different cores while there
    are free ones (picking by pid could put two on one core and leave another idle)."""
    from damnit_dagster.execution.limits import cores_for

    allowed = sorted(os.sched_getaffinity(0))
    one = Limits(cpus=1, mem=2 ** 30)
    with cores_for(one) as first, cores_for(one) as second:
        if len(allowed) > 1:
            assert first != second
        with cores_for(Limits(cpus=len(allowed), mem=2 ** 30)) as everything:
            assert everything == allowed
    with cores_for(one) as again:   # given back: the first core is free again
        assert again == first
