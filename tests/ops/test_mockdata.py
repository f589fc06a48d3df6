"""The mock proposal reads like real EuXFEL data through extra_data and EXtra."""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from extra.components import XGM, Scantool, XrayPulses
from extra_data import open_run
from extra_data.read_machinery import find_proposal

from damnit_dagster.ops.mockdata import (
    AGIPD_PROC_SOURCE,
    MOTOR_SOURCE,
    XGM_SOURCE,
    make_proposal,
    make_run,
    parse_runs,
    run_design,
)

# Opening the no-proc run with data="all" warns, as on real data; expected here.
pytestmark = pytest.mark.filterwarnings("ignore:No data available for this run at origin proc")


# The spec's first example context file, verbatim apart from the decorator.
def xgm_intensity(run):
    return XGM(run).pulse_energy().mean("pulseIndex")


def pulses(run):
    return XrayPulses(run).pulse_counts().to_xarray()


def _open(mock_proposal, run, data="all"):
    return open_run(mock_proposal.proposal, run, data=data)


def test_fixture_layout_and_environment(mock_proposal):
    assert os.environ["EXTRA_DATA_DATA_ROOT"] == str(mock_proposal.root)
    assert os.environ["XFEL_DATA_ROOT"] == str(mock_proposal.root)
    assert mock_proposal.path == mock_proposal.root / "MID" / "202501" / "p001234"
    assert Path(find_proposal("p001234")) == mock_proposal.path
    assert (mock_proposal.path / "usr" / "Shared" / "amore").is_dir()
    assert sorted(p.name for p in (mock_proposal.path / "raw").iterdir()) == \
        ["r0001", "r0002", "r0003", "r0004"]
    assert sorted(p.name for p in (mock_proposal.path / "proc").iterdir()) == \
        ["r0001", "r0002", "r0003"]


@pytest.mark.parametrize("run_no", [1, 2, 3, 4])
def test_spec_example_variables(mock_proposal, run_no):
    design = run_design(run_no)
    run = _open(mock_proposal, run_no)
    assert len(run.train_ids) == 100

    energy = xgm_intensity(run)
    assert energy.shape == (100,)
    # per-train mean of npulses draws with sigma 60 uJ: within 5 standard errors
    tolerance = 5 * 60 / np.sqrt(design.npulses)
    np.testing.assert_array_less(np.abs(energy.values - design.pulse_energy_uj), tolerance)
    assert XGM(run).pulse_energy().shape == (100, design.npulses)

    counts = pulses(run)
    assert counts.dims == ("trainId",)
    assert counts.values.tolist() == [design.npulses] * 100
    assert XGM(run).pulse_counts().values.tolist() == [design.npulses] * 100


def test_pulse_counts_differ_between_runs(mock_proposal):
    assert len({run_design(r).npulses for r in mock_proposal.runs}) > 1


def test_photon_energy_from_wavelength(mock_proposal):
    photon_energy = XGM(_open(mock_proposal, 1)).photon_energy(with_units=False)
    assert photon_energy == pytest.approx(9.0, abs=0.05)  # keV


@pytest.mark.parametrize("run_no", [1, 2, 3, 4])
def test_scantool_active_only_on_scan_run(mock_proposal, run_no):
    run = _open(mock_proposal, run_no)
    scan = run_no in mock_proposal.scan_runs
    assert Scantool(run).active == scan
    positions = run[MOTOR_SOURCE, "actualPosition"].ndarray()
    if scan:
        np.testing.assert_allclose(np.unique(positions), np.linspace(-1, 1, 10))
    else:
        assert np.unique(positions).tolist() == [run_design(run_no).samx]


def test_scantool_describes_the_scan(mock_proposal, capsys):
    Scantool(_open(mock_proposal, 3)).info()
    out = capsys.readouterr().out
    assert "Scan type: dscan" in out
    assert f"samx ({MOTOR_SOURCE}): -1.0 -> 1.0, 10 steps" in out


@pytest.mark.parametrize("run_no", [1, 2, 3])
def test_proc_agipd_shows_a_ring(mock_proposal, run_no):
    run = _open(mock_proposal, run_no, data="proc")
    image = run[AGIPD_PROC_SOURCE, "image.data"]
    assert image.shape == (200, 512, 128)
    first = image[0].ndarray()[0]          # filled with the ring + noise
    yy, xx = np.mgrid[:512, :128]
    radius = np.hypot(yy - 256, xx - 64)
    on_ring, far = first[np.abs(radius - 40) < 2], first[radius > 80]
    assert on_ring.mean() > 40 and abs(far.mean()) < 1
    # the raw detector source is there too when opening "all"
    assert "MID_DET_AGIPD1M-1/DET/0CH0:xtdf" in _open(mock_proposal, run_no).instrument_sources


def test_run_without_proc(mock_proposal):
    run_no = mock_proposal.runs_without_proc[0]
    with pytest.raises(FileNotFoundError):
        _open(mock_proposal, run_no, data="proc")
    with pytest.warns(UserWarning, match="No data available for this run at origin proc"):
        run = _open(mock_proposal, run_no, data="all")
    assert AGIPD_PROC_SOURCE not in run.all_sources
    assert XGM_SOURCE in run.control_sources


@pytest.mark.parametrize("run_no", [1, 4])
def test_metadata_is_deterministic(mock_proposal, run_no):
    run = _open(mock_proposal, run_no)
    design = run_design(run_no)
    stamps = run.train_timestamps()
    minutes = 10 * run_no
    assert str(stamps[0]) == f"2025-03-01T08:{minutes:02d}:00.000000000"
    assert (np.diff(stamps) == np.timedelta64(100, "ms")).all()
    assert run.train_ids[0] == design.first_train == 1_500_000_000 + run_no * 100_000
    meta = run.run_metadata()
    assert meta["proposalNumber"] == 1234
    assert meta["runNumber"] == run_no
    assert meta["creationDate"] == f"20250301T08{minutes:02d}00Z"


def test_regenerated_run_is_identical(mock_proposal, tmp_path):
    make_run(tmp_path, 1234, 1)
    name = "raw/r0001/RAW-R0001-DA01-S00000.h5"
    key = f"INSTRUMENT/{XGM_SOURCE}:output/data/intensityTD"
    with h5py.File(tmp_path / name) as new, h5py.File(mock_proposal.path / name) as old:
        np.testing.assert_array_equal(new[key][:], old[key][:])
        np.testing.assert_array_equal(new["INDEX/timestamp"][:], old["INDEX/timestamp"][:])
    # a different seed gives different values
    make_run(tmp_path / "other", 1234, 1, seed=7)
    with h5py.File(tmp_path / "other" / name) as other, h5py.File(tmp_path / name) as new:
        assert not np.array_equal(other[key][:], new[key][:])


def test_aliases_load(mock_proposal):
    run = _open(mock_proposal, 3)
    assert all(name in run.alias for name in ("sa2-xgm", "samx", "samx-pos"))
    np.testing.assert_array_equal(run.alias["samx-pos"].ndarray(),
                                  run[MOTOR_SOURCE, "actualPosition"].ndarray())
    assert run.alias["sa2-xgm"].source == XGM_SOURCE


def test_existing_runs_are_not_rewritten_and_proc_can_arrive_later(tmp_path):
    pdir = make_proposal(tmp_path, 99, [2], ntrains=10, runs_without_proc=[2])
    raw_file = pdir / "raw/r0002/RAW-R0002-DA01-S00000.h5"
    before = raw_file.stat().st_mtime_ns
    assert not (pdir / "proc/r0002").exists()

    make_run(pdir, 99, 2, ntrains=10, with_proc=True)   # calibration finished
    assert raw_file.stat().st_mtime_ns == before
    assert [p.name for p in (pdir / "proc/r0002").iterdir()] == ["CORR-R0002-AGIPD00-S00000.h5"]
    assert [p.name for p in (pdir / "raw").iterdir()] == ["r0002"]  # no staging leftovers


def test_default_scan_and_proc_pattern(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTRA_DATA_DATA_ROOT", str(tmp_path))
    pdir = make_proposal(tmp_path, 4321, [9, 10], ntrains=10)
    assert sorted(p.name for p in (pdir / "proc").iterdir()) == ["r0009"]
    assert Scantool(open_run(4321, 9)).active
    assert not Scantool(open_run(4321, 10)).active


def test_parse_runs():
    assert parse_runs("1-5,8") == [1, 2, 3, 4, 5, 8]
    assert parse_runs("3, 1-2") == [1, 2, 3]
    with pytest.raises(ValueError, match="bad run range '5-1'"):
        parse_runs("5-1")


def test_cli_writes_runs_and_reports_progress(tmp_path):
    cmd = [sys.executable, "-m", "damnit_dagster.ops.mockdata", "--root", str(tmp_path),
           "--proposal", "5678", "--runs", "1-2,5", "--trains", "10"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    pdir = tmp_path / "MID" / "202501" / "p005678"
    lines = res.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines[:3]] == \
        ["runs written: 1/3", "runs written: 2/3", "runs written: 3/3"]
    assert f"proposal 5678: {pdir}" in res.stdout
    assert sorted(p.name for p in (pdir / "raw").iterdir()) == ["r0001", "r0002", "r0005"]


def test_cli_rejects_bad_ranges(tmp_path):
    res = subprocess.run([sys.executable, "-m", "damnit_dagster.ops.mockdata", "--root",
                          str(tmp_path), "--runs", "1-x"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "bad run range '1-x'" in res.stderr
