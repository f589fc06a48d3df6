"""Evaluating real mock runs: opening raw and proc data, start_time, a context reading
the run's sources."""
from pathlib import Path

import numpy as np
import pytest

from context_loader.errors import Skip
from context_loader.evaluate import evaluate_run, open_run, start_time
from context_loader.proposal_paths import proc_available
from context_loader.variable import RunData
from support.evaluation import load


def test_open_run_and_start_time_of_mock_runs(mock_proposal):
    from damnit_dagster.ops.mockdata import run_design

    dc, opened = open_run(mock_proposal.proposal, 1, RunData.RAW)
    assert opened == "raw"
    assert all("/raw/" in f.filename for f in dc.files)
    assert start_time(dc) == run_design(1).start_time.timestamp()
    dc, opened = open_run(mock_proposal.proposal, 1, RunData.PROC)
    assert opened == "all" and any("/proc/" in f.filename for f in dc.files)
    assert proc_available(mock_proposal.proposal, 1)
    assert not proc_available(mock_proposal.proposal, 4)
    assert not proc_available(mock_proposal.proposal, 99)
    with pytest.raises(FileNotFoundError):
        open_run(mock_proposal.proposal, 99, RunData.RAW)


def test_evaluate_a_mock_run(mock_proposal):
    from damnit_dagster.ops.mockdata import XGM_SOURCE, run_design

    ctx = load(f"""
        @Variable(title="Trains")
        def n_trains(run):
            return len(run.train_ids)

        @Variable(title="Path")
        def path(run, p: "meta#proposal_path"):
            return str(p)

        @Variable(title="Photon flux", summary="mean")
        def flux(run):
            return run["{XGM_SOURCE}", "pulseEnergy.photonFlux"].xarray()

        @Variable(title="Missing source")
        def missing(run):
            return run["NO/SUCH/DEVICE", "x"].ndarray()

        @Variable(title="After missing")
        def after(run, m: "var#missing"):
            return m
        """)
    dc, _ = open_run(mock_proposal.proposal, 2, RunData.RAW)
    res = evaluate_run(ctx, dc, 2, mock_proposal.proposal)
    assert res.cells["n_trains"].data == 100
    assert res.cells["path"].data == str(mock_proposal.path)
    assert float(res.cells["start_time"].data) == run_design(2).start_time.timestamp()
    assert res.cells["flux"].data.dims == ("trainId",)
    assert type(res.errors["missing"]).__name__ == "SourceNameError"
    # A dependency failing for a missing source counts as Skip (DAMNIT 0.4.0).
    assert type(res.errors["after"]) is Skip
    assert str(res.errors["after"]).startswith(
        "Skipped due to missing dependency:\n└ (missing) failed: SourceNameError: ")


def test_start_time_of_a_run_without_trains_is_its_first_raw_files_mtime(mock_proposal):
    dc, _ = open_run(mock_proposal.proposal, 1, RunData.ALL)
    empty = dc.select_trains(np.s_[0:0])
    raw = sorted(f.filename for f in empty.files if "/raw/" in f.filename)
    assert raw and start_time(empty) == Path(raw[0]).stat().st_mtime
