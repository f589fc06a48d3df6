"""``python -m context_loader exec-runs``: several runs with one load of the context file,
each into its own fragment, report and log (a task of a Slurm job array)."""
import json
import os
import subprocess
import sys
import textwrap

import h5py

from support.paths import REPO

CONTEXT = """
    import os
    from damnit_ctx import Variable

    print("context loaded in", os.getpid())

    @Variable(title="Trains")
    def n_trains(run, run_no: "meta#run_number"):
        print("counting trains of run", run_no)
        return len(run.train_ids)
"""


def exec_runs(context, runs, tmp_path):
    args = [sys.executable, "-m", "context_loader", "exec-runs", str(context),
            "--proposal", "1234", "--data", "raw", "--header", "----- r{run} header -----"]
    files = {}
    for run in runs:
        files[run] = (tmp_path / f"r{run}.h5", tmp_path / f"r{run}.json",
                      tmp_path / f"r{run}.out")
        args += ["--task", str(run), *map(str, files[run])]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, files


def test_each_run_gets_its_own_files_and_log_after_one_load(mock_proposal, tmp_path):
    context = tmp_path / "context.py"
    context.write_text(textwrap.dedent(CONTEXT))
    proc, files = exec_runs(context, [1, 99, 2], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for run in (1, 2):
        fragment, report, log = files[run]
        assert json.loads(report.read_text())["variables"]["n_trains"]["status"] == "ok"
        with h5py.File(fragment) as f:
            assert f["n_trains/data"][()] > 0
        text = log.read_text()
        assert text.startswith(f"\n----- r{run} header -----\n")
        assert f"counting trains of run {run}" in text
        assert f"run {3 - run}" not in text
    # run 99 does not exist: its report says why, the runs after it are still evaluated
    fragment, report, log = files[99]
    assert json.loads(report.read_text())["error"].startswith("cannot open run 99")
    assert "error: cannot open run 99" in log.read_text()
    # the context file was loaded once, before the first run's log was opened
    assert proc.stdout.count("context loaded in") == 1


def test_a_context_that_does_not_load_fails_every_run_with_its_error(mock_proposal, tmp_path):
    context = tmp_path / "context.py"
    context.write_text("import no_such_module\n")
    proc, files = exec_runs(context, [1, 2], tmp_path)
    assert proc.returncode == 1
    for run in (1, 2):
        report = json.loads(files[run][1].read_text())
        assert report["problems"][0].startswith(f"{context}:1:")
        assert "No module named 'no_such_module'" in files[run][2].read_text()
        assert not files[run][0].exists()
