"""The demo, headless, to completion: what ./scripts/demo.sh runs."""
import os
import subprocess
import sys
import time

import pytest


@pytest.mark.slow
def test_demo_processes_a_mock_proposal_end_to_end(tmp_path):
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "damnit_dagster.ops.cli", "demo", "--workdir", str(workdir),
         "--runs", "2"], capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"})
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "damnit                           RUNNING" in out
    assert "runs with all results: 2/2" in out
    # The printed run table has the titles of the context's variables and their values.
    table = out.split("runs with all results: 2/2", 1)[1]
    assert "XGM intensity [uJ]" in table and "Detector mean" in table
    assert "Backend stopped" in out
    # Results are in DAMNIT's files, readable by DAMNIT's own reader.
    from damnit.api import Damnit
    db = Damnit(workdir / "data/MID/202501/p001234/usr/Shared/amore")
    assert sorted(db.runs()) == [1, 2]   # damnit.api does not sort them
    assert 800 < db[1, "xgm_intensity"].summary() < 810
    assert db[1, "agipd_mean"].summary() > 0         # proc variable: calibration event ran
    # Nothing of the backend is left running (processes may take a moment to exit).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True).stdout
        alive = [line for line in ps.splitlines()
                 if str(workdir) in line and not line.startswith("Z")]
        if not alive:
            break
        time.sleep(1)
    assert not alive, alive
