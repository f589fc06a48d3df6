"""The runner: `python -m context_loader describe|exec`, and the same as a Python API.

Results travel through files only (a JSON report and an HDF5 fragment). The last test
runs it from a second virtual environment that has no Dagster, like a user's
``context_python``.
"""
import json
import os
import subprocess
import sys
import textwrap

import h5py
import pytest

from context_loader import runner
from context_loader.contextfile import ContextFile
from context_loader.errors import ContextFileErrors
from support.paths import REPO

CONTEXT = '''\
import xarray as xr
from damnit_ctx import Variable, Skip

XGM = "SA2_XTD1_XGM/XGM/DOOCS"

@Variable(title="Trains")
def n_trains(run):
    print("counting trains")
    return len(run.train_ids)

@Variable(title="Photon flux", summary="mean", units="uJ")
def flux(run):
    return run[XGM, "pulseEnergy.photonFlux"].xarray()

@Variable(title="Run number x2")
def doubled(run, n: "meta#run_number"):
    return 2 * n

@Variable(title="Nothing")
def nothing(run):
    return None

@Variable(title="Scan only")
def scan_only(run):
    raise Skip("Run is not a scan")

@Variable(title="Broken")
def broken(run, t: "var#n_trains"):
    return int(t) // 0

@Variable(transient=True)
def helper(run):
    return {"not": "storable"}

@Variable(title="Uses helper")
def uses_helper(run, h: "var#helper"):
    return len(h)

@Variable(title="Detector mean", data="proc")
def det_mean(run):
    return float(run["MID_DET_AGIPD1M-1/CORR/0CH0:output", "image.data"].ndarray().mean())

@Variable(title="Heavy", cluster=True)
def heavy(run, t: "var#n_trains"):
    return t * 10
'''


@pytest.fixture()
def context_path(tmp_path):
    path = tmp_path / "context.py"
    path.write_text(CONTEXT)
    return path


def run_cli(*args, cwd=None, env=None, python=sys.executable):
    return subprocess.run([python, "-m", "context_loader", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_describe_api(context_path, tmp_path):
    result = runner.describe(context_path)
    assert result["ok"] is True
    by_name = {v["name"]: v for v in result["variables"]}
    assert by_name["flux"]["units"] == "uJ" and by_name["flux"]["summary"] == "mean"
    assert by_name["heavy"]["cluster"] is True and by_name["det_mean"]["data"] == "proc"
    assert by_name["helper"]["transient"] is True
    assert by_name["broken"]["deps"] == ["n_trains"]
    bad = tmp_path / "bad.py"
    bad.write_text("from damnit_ctx import Variable\n\n@Variable(title='x')\n"
                   "def x(run, y: 'var#y'):\n    return y\n")
    assert runner.describe(bad) == {
        "ok": False, "problems": [f"{bad}:3: variable 'x': missing dependency 'var#y'"]}


def test_describe_cli(context_path, tmp_path):
    out = tmp_path / "out.json"
    proc = run_cli("describe", context_path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    described = json.loads(out.read_text())
    assert described["ok"] is True
    assert [v["name"] for v in described["variables"]] == [
        v["name"] for v in ContextFile.from_path(context_path).describe()]


def test_describe_cli_reports_problems_without_traceback(tmp_path):
    bad = tmp_path / "context.py"
    bad.write_text("from damnit_ctx import Variable\n\n@Variable(title='A', data='fast')\n"
                   "def a(run):\n    return 1\n\n@Variable(title='A')\ndef b(run):\n"
                   "    return 2\n")
    out = tmp_path / "out.json"
    proc = run_cli("describe", bad, "--out", out)
    assert proc.returncode == 1
    problems = [f"{bad}:3: variable 'a': data='fast' (can be 'raw'/'proc')",
                f"{bad}:7: variable 'b': these Variables have duplicate titles between "
                "them: a, b (title 'A')"]
    assert json.loads(out.read_text()) == {"ok": False, "problems": problems}
    assert proc.stderr == "\n".join(problems) + "\n"


def test_execute_api_writes_fragment_and_report(mock_proposal, context_path, tmp_path):
    fragment = tmp_path / "frag.h5"
    report = runner.execute(context_path, mock_proposal.proposal, 2, "all",
                            cluster=False, fragment_path=fragment)
    assert report["proposal"] == 1234 and report["run"] == 2
    assert report["data_opened"] == "all" and report["proc_missing"] == []
    from damnit_dagster.ops.mockdata import run_design
    assert report["start_time"] == run_design(2).start_time.timestamp()
    status = {n: v["status"] for n, v in report["variables"].items()}
    assert status == {"n_trains": "ok", "flux": "ok", "doubled": "ok", "nothing": "none",
                      "scan_only": "skipped", "broken": "error", "uses_helper": "ok",
                      "det_mean": "ok"}   # heavy is a cluster variable; helper transient
    broken = report["variables"]["broken"]
    assert (broken["error_cls"], broken["error"]) == ("ZeroDivisionError",
                                                      "integer division or modulo by zero")
    assert report["variables"]["scan_only"]["error"] == "Run is not a scan"
    assert report["variables"]["n_trains"]["duration"] >= 0
    with h5py.File(fragment) as f:
        assert f["n_trains/data"][()] == 100
        assert f[".reduced/doubled"][()] == 4
        assert f[".reduced/flux"].attrs["units"] == "uJ"
        assert f[".errors/broken"].attrs["type"] == "ZeroDivisionError"
        assert f[".errors/scan_only"].attrs["type"] == "Skip"
        assert "helper" not in f and "helper" not in f[".reduced"]
        assert ".reduced/start_time" in f
        det = f[".reduced/det_mean"][()]
    assert det > 0   # the proc ring image is not all zeros


def test_execute_accepts_a_loaded_context(mock_proposal, context_path, tmp_path):
    ctx = ContextFile.from_path(context_path)
    for run_number in (1, 2):
        report = runner.execute(ctx, mock_proposal.proposal, run_number, "raw",
                                variables=["doubled"], fragment_path=tmp_path / f"{run_number}.h5")
        duration = report["variables"]["doubled"]["duration"]
        assert report["variables"] == {"doubled": {"status": "ok", "error": None,
                                                   "error_cls": None, "duration": duration}}
        with h5py.File(tmp_path / f"{run_number}.h5") as f:
            assert f["doubled/data"][()] == 2 * run_number


def test_proc_variables_wait_for_proc_data(mock_proposal, context_path, tmp_path):
    run_without_proc = mock_proposal.runs_without_proc[0]
    report = runner.execute(context_path, mock_proposal.proposal, run_without_proc, "proc",
                            fragment_path=tmp_path / "f.h5")
    assert report["proc_missing"] == ["det_mean"]
    assert "det_mean" not in report["variables"] and report["data_opened"] == "raw"
    report = runner.execute(context_path, mock_proposal.proposal, 1, "proc",
                            fragment_path=tmp_path / "g.h5")
    assert report["proc_missing"] == [] and set(report["variables"]) == {"det_mean"}


def test_execute_errors(mock_proposal, context_path, tmp_path):
    with pytest.raises(runner.RunnerError, match="unknown variable.*: nope"):
        runner.execute(context_path, 1234, 1, "raw", variables=["nope"],
                       fragment_path=tmp_path / "f.h5")
    with pytest.raises(runner.RunnerError) as e:
        runner.execute(context_path, 1234, 99, "raw", fragment_path=tmp_path / "f.h5")
    assert str(e.value).startswith("cannot open run 99 of proposal 1234 (raw data): ")
    bad = tmp_path / "bad.py"
    bad.write_text("x = (\n")
    with pytest.raises(ContextFileErrors):
        runner.execute(bad, 1234, 1, "raw", fragment_path=tmp_path / "f.h5")
    assert not (tmp_path / "f.h5").exists()


def test_exec_cli(mock_proposal, context_path, tmp_path):
    fragment, report_path = tmp_path / "frag.h5", tmp_path / "report.json"
    proc = run_cli("exec", context_path, "--proposal", 1234, "--run", 3, "--data", "raw",
                   "--match", "trains", "--match", "HEAVY", "--cluster",
                   "--fragment", fragment, "--report", report_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    assert report["data_opened"] == "raw"
    # --cluster keeps cluster variables; their dependencies come back whatever they are.
    assert {n: v["status"] for n, v in report["variables"].items()} == {
        "n_trains": "ok", "heavy": "ok"}
    with h5py.File(fragment) as f:
        assert f["heavy/data"][()] == 1000
    # The user's print goes to stdout, our log lines to stderr.
    assert proc.stdout == "counting trains\n"
    assert "Computed heavy in " in proc.stderr and "Traceback" not in proc.stderr


def test_exec_cli_failures_exit_non_zero(mock_proposal, context_path, tmp_path):
    report_path = tmp_path / "report.json"
    common = ["--fragment", tmp_path / "f.h5", "--report", report_path]
    proc = run_cli("exec", context_path, "--proposal", 1234, "--run", 99, "--data", "raw",
                   *common)
    assert proc.returncode == 2
    assert "error: cannot open run 99 of proposal 1234 (raw data): " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(report_path.read_text())["error"].startswith("cannot open run 99")
    bad = tmp_path / "context_bad.py"
    bad.write_text("import no_such_module\n")
    proc = run_cli("exec", bad, "--proposal", 1234, "--run", 1, "--data", "raw", *common)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{bad}:1: error while running the context file: "
                                  "ModuleNotFoundError: No module named 'no_such_module'")
    assert json.loads(report_path.read_text())["problems"][0].startswith(f"{bad}:1:")
    assert not (tmp_path / "f.h5").exists()


def test_exec_cli_imports_modules_next_to_the_context(mock_proposal, tmp_path):
    folder = tmp_path / "amore"
    folder.mkdir()
    (folder / "helpers_of_mine.py").write_text("FACTOR = 3\n")
    (folder / "context.py").write_text(textwrap.dedent("""
        from damnit_ctx import Variable
        from helpers_of_mine import FACTOR

        @Variable(title="Scaled")
        def scaled(run, n: "meta#run_number"):
            return FACTOR * n
        """))
    proc = run_cli("exec", folder / "context.py", "--proposal", 1234, "--run", 2, "--data",
                   "raw", "--fragment", tmp_path / "f.h5", "--report", tmp_path / "r.json",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "f.h5") as f:
        assert f["scaled/data"][()] == 6


@pytest.mark.slow
def test_runner_in_a_second_venv_without_dagster(mock_proposal, context_path, tmp_path):
    venv = tmp_path / "ctx-venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "extra_data", "numpy", "xarray",
                    "h5py", "h5netcdf"], check=True, capture_output=True, timeout=900)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO)
    no_dagster = subprocess.run([python, "-c", "import dagster"], env=env,
                                capture_output=True, text=True)
    assert "No module named 'dagster'" in no_dagster.stderr

    fragment, report_path = tmp_path / "frag.h5", tmp_path / "report.json"
    proc = run_cli("exec", context_path, "--proposal", 1234, "--run", 1, "--data", "all",
                   "--no-cluster", "--fragment", fragment, "--report", report_path,
                   cwd=tmp_path, env=env, python=python)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    assert {n: v["status"] for n, v in report["variables"].items()} == {
        "n_trains": "ok", "flux": "ok", "doubled": "ok", "nothing": "none",
        "scan_only": "skipped", "broken": "error", "uses_helper": "ok", "det_mean": "ok"}
    with h5py.File(fragment) as f:
        assert f["n_trains/data"][()] == 100 and f["doubled/data"][()] == 2
        assert f["flux"].attrs["_damnit_objtype"] == "dataarray"
        assert f[".errors/broken"].attrs["type"] == "ZeroDivisionError"
    describe_out = tmp_path / "d.json"
    proc = run_cli("describe", context_path, "--out", describe_out, env=env, python=python)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(describe_out.read_text())["variables"] == runner.describe(
        context_path)["variables"]


def test_mymdc_arguments_use_the_proposals_credentials(mock_proposal, tmp_path):
    path = tmp_path / "context.py"
    path.write_text(textwrap.dedent("""
        from damnit_ctx import Variable

        @Variable(title="Sample")
        def sample(run, s: "mymdc#sample_name"):
            return s

        @Variable(title="Plain")
        def plain(run):
            return 1
        """))
    credentials = mock_proposal.path / "usr" / "mymdc-credentials.yml"
    assert not credentials.exists()
    report = runner.execute(path, 1234, 1, "raw", fragment_path=tmp_path / "f.h5")
    # Without credentials only the variable that asks MyMDC fails, and says why.
    assert report["variables"]["plain"]["status"] == "ok"
    assert report["variables"]["sample"]["error_cls"] == "MyMdcCredentialsError"
    assert report["variables"]["sample"]["error"] == (
        f"no MyMDC credentials: {credentials} does not exist")

    class Client:
        def sample_name(self, proposal, run):
            return f"sample of p{proposal} r{run}"

    report = runner.execute(path, 1234, 1, "raw", fragment_path=tmp_path / "g.h5",
                            mymdc=Client())
    with h5py.File(tmp_path / "g.h5") as f:
        assert f["sample/data"][()].decode() == "sample of p1234 r1"


def test_warm_up_loads_what_evaluations_load_lazily_and_writes_no_file(tmp_path):
    """A process that forks evaluations warms up first, so each child does not import the
    netCDF writer and matplotlib's renderer again, nor look for xarray's backends when it
    reads a stored input."""
    lazy = ["h5netcdf", "matplotlib.backends.backend_agg", "matplotlib.font_manager",
            "PIL.PngImagePlugin"]
    code = ("import sys, json; from context_loader.runner import warm_up; "
            f"before = [m for m in {lazy!r} if m in sys.modules]; warm_up(); "
            "from xarray.backends.plugins import list_engines; "
            f"print(json.dumps([before, [m for m in {lazy!r} if m in sys.modules], "
            "list_engines.cache_info().currsize]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, env={**os.environ, "MPLBACKEND": "Agg",
                                                     "PYTHONPATH": str(REPO)}).stdout
    before, after, engines_found = json.loads(out)
    assert before == [] and after == lazy
    assert engines_found == 1
    assert list(tmp_path.iterdir()) == []
