"""db-config context_python: variables evaluated by another interpreter, through the
runner, and a clear error when that interpreter lacks what it needs."""
import subprocess
import sys
import textwrap

import pytest

from damnit_dagster.execution.context_python import evaluate_local
from damnit_dagster.execution.environment import (
    PROJECT_ROOT,
    ContextPythonError,
    check_python,
    resolve_python,
    runner_command,
    runner_env,
)
from damnit_dagster.storage.writer import store_fragment

CONTEXT = textwrap.dedent("""
    import sys
    from damnit_ctx import Variable

    @Variable(title="Interpreter")
    def interpreter(run):
        return sys.prefix

    @Variable(title="Trains")
    def n_trains(run):
        return len(run.train_ids)
""")


@pytest.fixture
def damnit_dir(damnit_folder, mock_proposal):
    return damnit_folder(CONTEXT, proposal=mock_proposal.proposal).root


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory):
    """A virtual environment with nothing installed (not even pip)."""
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)],
                   check=True)
    return str(venv / "bin" / "python")


def test_empty_setting_is_our_own_interpreter():
    assert resolve_python(None) == sys.executable
    assert resolve_python("") == sys.executable
    check_python(sys.executable)  # has everything


def test_not_an_interpreter_is_a_clear_error(tmp_path):
    with pytest.raises(ContextPythonError, match=r"'/no/such/python' is not an executable"):
        resolve_python("/no/such/python")
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    with pytest.raises(ContextPythonError, match=rf"{script} is not a usable Python"):
        check_python(str(script))


def test_python_lacking_extra_data_is_named(bare_python, damnit_dir, mock_proposal):
    with pytest.raises(ContextPythonError) as info:
        check_python(bare_python)
    msg = str(info.value)
    assert msg.startswith(f"context_python {bare_python} (Python 3.")
    assert "lacks the module(s) extra_data, numpy, xarray, h5py, h5netcdf, yaml, requests" in msg
    assert f"{bare_python} -m pip install extra_data numpy xarray h5py h5netcdf pyyaml " \
           "requests" in msg
    # The evaluation refuses before anything runs.
    with pytest.raises(ContextPythonError, match="lacks the module"):
        evaluate_local(damnit_dir, mock_proposal.proposal, 1, echo=None,
                       settings={"context_python": bare_python})


def test_runner_command_and_env():
    cmd = runner_command("/env/bin/python", "/d/context.py", 1234, 5, "proc",
                         fragment="/d/f.h5", report="/d/f.json", variables=["a", "b"],
                         match=["xgm"], cluster=False)
    assert cmd == ["/env/bin/python", "-m", "context_loader", "exec", "/d/context.py",
                   "--proposal", "1234", "--run", "5", "--data", "proc", "--var", "a",
                   "--var", "b", "--match", "xgm", "--no-cluster", "--fragment", "/d/f.h5",
                   "--report", "/d/f.json"]
    env = runner_env({"PYTHONPATH": "/mine", "DISPLAY": ":0", "HOME": "/root"})
    assert env == {"PYTHONPATH": f"{PROJECT_ROOT}:/mine", "HOME": "/root"}


@pytest.mark.slow
def test_second_venv_as_context_python(tmp_path_factory, damnit_dir, mock_proposal):
    venv = tmp_path_factory.mktemp("context-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "extra_data", "numpy", "xarray", "h5py", "h5netcdf", "pyyaml", "requests"],
                   check=True, timeout=900)
    check_python(python)

    ev = evaluate_local(damnit_dir, mock_proposal.proposal, 1, echo=None,
                        settings={"context_python": python})
    assert {n: v["status"] for n, v in ev.report["variables"].items()} == {
        "interpreter": "ok", "n_trains": "ok"}
    summaries = store_fragment(damnit_dir, mock_proposal.proposal, 1, ev.fragment)
    assert summaries["interpreter"] == str(venv)     # evaluated by the other interpreter
    assert summaries["n_trains"] == 100
    assert f"python: {python}" in ev.log.read_text()
