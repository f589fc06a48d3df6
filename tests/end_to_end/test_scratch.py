"""The spec's "Starting from scratch", and reprocess as a user types it."""
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

CONTEXT = '''
from damnit_ctx import Variable, Skip
from extra.components import XGM

@Variable(title="XGM intensity [uJ]", summary="mean", tags="xgm")
def xgm_intensity(run):
    return XGM(run).pulse_energy().mean("pulseIndex")

@Variable(title="Trains")
def n_trains(run):
    return len(run.train_ids)

@Variable(title="Doubled")
def doubled(run, n: "var#n_trains", r: "meta#run_number"):
    return 2 * n + r

@Variable(title="Broken")
def broken(run):
    raise RuntimeError("deliberate failure")
'''


def damnit(*args, cwd, check=True):
    result = subprocess.run([sys.executable, "-m", "damnit_dagster.ops.cli", *map(str, args)],
                            cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def stored(folder, runs=(1, 2)):
    from damnit.api import Damnit
    db = Damnit(folder)
    return {(run, name): (np.asarray(db[run, name].read()), db[run, name].summary())
            for run in runs for name in ("xgm_intensity", "n_trains", "doubled")}


@pytest.mark.slow
def test_starting_from_scratch_restores_every_result(mock_proposal, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    folder = tmp_path / "amore"
    folder.mkdir()
    damnit("proposal", mock_proposal.proposal, cwd=folder)
    (folder / "context.py").write_text(CONTEXT)
    damnit("read-context", cwd=folder)

    # Run 99 has no raw data: it is reported and the exit status says so.
    first = damnit("reprocess", "1-2", "99", cwd=folder, check=False)
    assert first.returncode != 0
    assert "r99: skipped, no raw data" in first.stderr
    assert "r1 broken: failed: RuntimeError: deliberate failure" in first.stdout
    assert "not processed: r99" in first.stderr
    before = stored(folder)
    assert set(before) == {(r, n) for r in (1, 2) for n in ("xgm_intensity", "n_trains", "doubled")}

    # The spec's steps: rm runs.sqlite, rm -rf extracted_data/, damnit proposal 1234.
    (folder / "runs.sqlite").unlink()
    shutil.rmtree(folder / "extracted_data")
    damnit("proposal", mock_proposal.proposal, cwd=folder)
    with sqlite3.connect(folder / "runs.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM run_variables").fetchone()[0] == 0

    again = damnit("reprocess", "all", cwd=folder)  # failures of variables: still exit 0
    assert "r1 broken: failed" in again.stdout
    after = stored(folder)
    assert "of 4 runs processed" in again.stdout  # all = every run with raw data
    for key, (data, summary) in before.items():
        np.testing.assert_array_equal(after[key][0], data, err_msg=str(key))
        assert after[key][1] == summary, key
