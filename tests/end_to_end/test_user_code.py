"""Users' code cannot stall, leak or take a run down (issue 14), checked as a user sees it:
``damnit-dagster reprocess`` on mock runs, then the run files, the process logs and the
processes left on the machine.

One reprocess of runs 1-3 under ``slurm_time 00:00:20`` covers the context below: a
module imported from next to ``context.py``, a variable that leaves a ``sleep`` running,
one that calls ``sys.exit()``, and on run 2 a segfault, on run 3 a hang past the limit.
"""
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pytest

from context_loader.contextfile import ContextFile
from damnit_dagster.execution.context_python import evaluate_local
from damnit_dagster.execution.process_run import evaluate_and_store
from support.folders import make_damnit_folder
from support.paths import REPO

CLI = str(Path(sys.executable).parent / "damnit-dagster")

CONTEXT = textwrap.dedent("""
    import ctypes, subprocess, sys
    from damnit_ctx import Variable
    from helper_mod import offset

    @Variable(title="Shifted")
    def shifted(run, n: "meta#run_number"):
        return n + offset

    @Variable(title="Spawner")
    def spawner(run, s: "var#shifted"):
        subprocess.Popen(["sleep", "347"])     # never waited for
        return 1

    @Variable(title="Quitter")
    def quitter(run, s: "var#spawner"):
        sys.exit(3)

    @Variable(title="Risky")
    def risky(run, n: "meta#run_number", q: "var#quitter" = None):
        if n == 2:
            ctypes.string_at(0)                # segfault
        if n == 3:
            subprocess.run(["sleep", "349"])   # hangs past the time limit
        return n * 10

    @Variable(title="Last")
    def last(run, r: "var#risky" = None):
        return 5
""")


def reprocess(folder, *args, timeout=300):
    return subprocess.run([CLI, "--dir", str(folder), "reprocess", "--direct", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=folder,
                          env={**os.environ, "MPLBACKEND": "Agg"})


def sleeps_left(*durations) -> list[str]:
    """The ``sleep`` processes of these durations still running."""
    pattern = "|".join(map(str, durations))
    proc = subprocess.run(["pgrep", "-a", "-f", f"^sleep ({pattern})$"],
                          capture_output=True, text=True)
    return proc.stdout.splitlines()


def stored(folder, run):
    """``{name: value or ("error", message)}`` from the run's HDF5 file."""
    out = {}
    with h5py.File(folder / "extracted_data" / f"p1234_r{run}.h5") as f:
        for name in f[".errors"]:
            out[name] = ("error", f[f".errors/{name}"][()].decode())
        for name in f:
            if not name.startswith(".") and "data" in f[name]:
                out[name] = f[f"{name}/data"][()]
    return out


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("DAGSTER_HOME")
    else:
        os.environ["DAGSTER_HOME"] = old


@pytest.fixture(scope="module")
def reprocessed(tmp_path_factory, mock_proposal, dagster_home):
    """The folder after ``reprocess 1-3`` with a 20 s limit, the command's result and
    how long it took."""
    folder = make_damnit_folder(tmp_path_factory.mktemp("user-code") / "amore", CONTEXT,
                                proposal=mock_proposal.proposal, slurm_time="00:00:20").root
    (folder / "helper_mod.py").write_text("offset = 100\n")
    t0 = time.monotonic()
    proc = reprocess(folder, "1-3")
    return folder, proc, time.monotonic() - t0


@pytest.mark.slow
def test_a_module_next_to_the_context_file_is_imported(reprocessed):
    folder, proc, _ = reprocessed
    assert "helper_mod" not in proc.stderr
    assert [stored(folder, run)["shifted"] for run in (1, 2, 3)] == [101, 102, 103]


@pytest.mark.slow
def test_sys_exit_fails_only_its_variable(reprocessed):
    folder, proc, _ = reprocessed
    values = stored(folder, 1)
    assert values["quitter"] == ("error", "the variable called sys.exit(3)")
    assert (values["shifted"], values["spawner"], values["risky"], values["last"]) == (
        101, 1, 10, 5)
    assert "r1 quitter: failed: SystemExit: the variable called sys.exit(3)" in proc.stdout


@pytest.mark.slow
def test_a_segfault_keeps_what_was_computed_before_it(reprocessed):
    folder, proc, _ = reprocessed
    values = stored(folder, 2)
    assert (values["shifted"], values["spawner"]) == (102, 1)
    assert values["quitter"] == ("error", "the variable called sys.exit(3)")
    kind, message = values["risky"]
    assert kind == "error" and message.startswith(
        "the process evaluating run 2 was killed by signal 11 (SIGSEGV)")
    assert message.endswith("while computing this variable")
    assert values["last"][1].startswith("not computed: the process evaluating run 2 was "
                                        "killed by signal 11")
    assert values["last"][1].endswith("while computing 'risky'")
    assert "r2 risky: failed: ChildProcessError" in proc.stdout


@pytest.mark.slow
def test_a_hanging_variable_stops_at_the_time_limit_keeping_the_rest(reprocessed):
    folder, proc, took = reprocessed
    assert proc.returncode == 0, proc.stderr
    assert "3 of 3 runs processed" in proc.stdout
    values = stored(folder, 3)
    assert (values["shifted"], values["spawner"]) == (103, 1)
    assert values["risky"] == ("error", "timed out after 00:00:20 (the slurm_time limit) "
                                        "while computing this variable")
    assert values["last"] == ("error", "not computed: timed out after 00:00:20 (the "
                                       "slurm_time limit) while computing 'risky'")
    log = (folder / "process_logs" / "r3-p1234.out").read_text()
    seconds = float(re.findall(r"----- r3 done in ([\d.]+) s", log)[-1])
    assert 20 <= seconds < 26
    assert took < 60                 # the command did not wait for the 349 s sleep
    # the other runs were not held up by it
    for run in (1, 2):
        log = (folder / "process_logs" / f"r{run}-p1234.out").read_text()
        assert float(re.findall(rf"----- r{run} done in ([\d.]+) s", log)[-1]) < 15


@pytest.mark.slow
def test_no_process_a_variable_started_outlives_its_evaluation(reprocessed):
    _, proc, _ = reprocessed
    assert proc.returncode == 0, proc.stderr
    assert sleeps_left(347, 349) == []


@pytest.mark.slow
def test_an_edited_neighbour_module_is_used_by_the_next_reprocess(reprocessed):
    """(After the tests above, which look at the first reprocess's results.)"""
    folder, _, _ = reprocessed
    (folder / "helper_mod.py").write_text("offset = 2000\n")
    proc = reprocess(folder, "1", "--var", "shifted")
    assert proc.returncode == 0, proc.stderr
    assert stored(folder, 1)["shifted"] == 2001


def test_reloading_a_context_file_rereads_its_neighbour_module(tmp_path):
    """In one process (a warm server), as the live backend reloads."""
    for name, offset in (("a", 1), ("b", 5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "helper_mod.py").write_text(f"offset = {offset}\n")
        (tmp_path / name / "context.py").write_text(CONTEXT)
    first = ContextFile.from_path(tmp_path / "a" / "context.py")
    (tmp_path / "a" / "helper_mod.py").write_text("offset = 1000\n")
    second = ContextFile.from_path(tmp_path / "a" / "context.py")
    other = ContextFile.from_path(tmp_path / "b" / "context.py")   # another folder's module
    assert first.vars["shifted"].func(None, n=1) == 2
    assert second.vars["shifted"].func(None, n=1) == 1001
    assert other.vars["shifted"].func(None, n=1) == 6


def test_context_python_evaluations_have_the_time_limit_and_clean_up(damnit_folder,
                                                                     mock_proposal):
    """The runner in a ``context_python`` interpreter (as evaluated by evaluate_local)."""
    folder = damnit_folder("""
        import subprocess, time
        from damnit_ctx import Variable

        @Variable()
        def quick(run):
            subprocess.Popen(["sleep", "353"])
            return 1

        @Variable()
        def slow(run, q: "var#quick"):
            time.sleep(150)
    """, proposal=mock_proposal.proposal).root
    t0 = time.monotonic()
    evaluation = evaluate_local(folder, mock_proposal.proposal, 1, "raw", echo=None,
                                settings={"slurm_time": "0:04"})
    assert time.monotonic() - t0 < 4 + 6
    variables = evaluation.report["variables"]
    assert variables["quick"]["status"] == "ok"
    assert variables["slow"]["error"] == ("timed out after 00:00:04 (the slurm_time limit) "
                                          "while computing this variable")
    assert variables["slow"]["error_cls"] == "TimeoutError"
    with h5py.File(evaluation.fragment) as f:
        assert f["quick/data"][()] == 1
    assert sleeps_left(353) == []


def test_a_step_forking_its_own_evaluations_has_the_time_limit_and_cleans_up(
        damnit_folder, mock_proposal):
    """What a Dagster step of the live backend does (no evaluation server): the child it
    forks is stopped at the limit with whatever it started, what it finished is stored."""
    folder = damnit_folder("""
        import subprocess
        from damnit_ctx import Variable
        from helper_mod import offset

        @Variable()
        def quick(run):
            subprocess.Popen(["sleep", "355"])
            return offset

        @Variable()
        def stuck(run, q: "var#quick"):
            subprocess.run(["sleep", "357"])
    """, proposal=mock_proposal.proposal, slurm_time="0:04").root
    (folder / "helper_mod.py").write_text("offset = 7\n")
    t0 = time.monotonic()
    outcome = evaluate_and_store(folder, mock_proposal.proposal, 1, folder / "context.py",
                                 ["quick", "stuck"], "raw", settings={"slurm_time": "0:04"})
    assert time.monotonic() - t0 < 4 + 6
    assert outcome.error is None
    assert outcome.variables["stuck"]["error_cls"] == "TimeoutError"
    values = stored(folder, 1)
    assert values["quick"] == 7
    assert values["stuck"] == ("error", "timed out after 00:00:04 (the slurm_time limit) "
                                        "while computing this variable")
    assert sleeps_left(355, 357) == []
    assert sorted(p.name for p in (folder / "extracted_data").iterdir()) == [
        "p1234_r1.h5", "p1234_r1.h5.lock"]


@pytest.mark.slow
def test_killing_reprocess_repeatedly_leaves_no_files_once_runs_are_stored(
        damnit_folder, mock_proposal, dagster_home):
    folder = damnit_folder("""
        import subprocess, time
        import numpy as np
        from damnit_ctx import Variable

        @Variable()
        def first(run, n: "meta#run_number"):
            subprocess.Popen(["sleep", "359"])
            time.sleep(0.5)
            return np.arange(100_000) * n

        @Variable()
        def second(run, f: "var#first"):
            time.sleep(0.5)
            return float(f.sum())

        @Variable()
        def third(run, s: "var#second"):
            time.sleep(0.5)
            return s + 1
    """, proposal=mock_proposal.proposal).root
    extracted = folder / "extracted_data"
    rng = random.Random(14)
    for _ in range(3):
        before = set(extracted.iterdir())
        proc = subprocess.Popen([CLI, "--dir", str(folder), "reprocess", "--direct", "1-4"],
                                cwd=folder, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not set(extracted.iterdir()) - before and time.monotonic() < deadline:
            time.sleep(0.05)        # until the first evaluation has started
        time.sleep(rng.uniform(0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [p for p in extracted.iterdir() if ".fragment.h5" in p.name]
    proc = reprocess(folder, "1-4")
    assert proc.returncode == 0, proc.stderr
    time.sleep(1)     # the killed commands' evaluation servers have ended their children
    names = sorted(p.name for p in (folder / "extracted_data").iterdir())
    assert names == sorted([f"p1234_r{r}.h5" for r in (1, 2, 3, 4)]
                           + [f"p1234_r{r}.h5.lock" for r in (1, 2, 3, 4)])
    for run in (1, 2, 3, 4):
        assert stored(folder, run)["third"] == 4999950000.0 * run + 1
    assert sleeps_left(359) == []   # nor processes, of the killed commands' evaluations too


@pytest.mark.slow
def test_the_live_backend_keeps_processing_past_a_hang_and_a_crash(tmp_path, mock_proposal):
    """Events for runs 1-3 to a running backend, with the context of the reprocess above:
    each Dagster run ends by the time limit, keeps what finished, leaves no process; then
    an edited neighbour module is used for the next run's event."""
    from support.backend import running_backend

    folder = make_damnit_folder(tmp_path / "amore", CONTEXT, proposal=mock_proposal.proposal,
                                slurm_time="00:00:10").root
    (folder / "helper_mod.py").write_text("offset = 100\n")
    launcher = {"run_launcher": {"module": "damnit_dagster.plugins.launcher",
                                 "class": "ForkServerRunLauncher"}}

    def event(*runs):
        subprocess.run([CLI, "--dir", str(folder), "event", "migration", *map(str, runs)],
                       check=True, capture_output=True, timeout=60)

    def wait_for(run, name, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backend.check_alive()
            try:
                value = stored(folder, run).get(name)
            except (OSError, KeyError):
                value = None
            if value is not None:
                return value
            time.sleep(0.2)
        raise AssertionError(f"r{run} {name}: not stored after {timeout} s\n"
                             + backend.log()[-3000:])

    with running_backend(folder, tmp_path / "home", instance_config=launcher) as backend:
        backend.wait_for_sensor()
        t0 = time.monotonic()
        event(1, 2, 3)
        assert wait_for(1, "last") == 5
        assert wait_for(2, "last")[1].startswith("not computed: the process evaluating run 2")
        assert wait_for(3, "last")[1].startswith("not computed: timed out after 00:00:10")
        assert time.monotonic() - t0 < 10 + 25
        assert stored(folder, 3)["shifted"] == 103
        assert sleeps_left(347, 349) == []
        (folder / "helper_mod.py").write_text("offset = 3000\n")
        event(4)
        assert wait_for(4, "shifted") == 3004
