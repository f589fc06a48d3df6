"""Materialising variables of mock runs on a real temporary Dagster instance."""

import socket

import dagster as dg
import h5py
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.events import DagsterEventType
from dagster._core.loader import LoadingContextForTest

from damnit_dagster.defs.definitions import build_definitions

CONTEXT = '''
import numpy as np
import xarray as xr
from damnit_ctx import Variable, Skip
from extra.components import XGM, Scantool

@Variable(title="XGM intensity", summary="mean", units="uJ")
def xgm_intensity(run):
    """Mean XGM intensity per train."""
    print("computing the XGM intensity")
    return XGM(run).pulse_energy().mean("pulseIndex")

@Variable(title="XGM std")
def xgm_std(run, xgm: "var#xgm_intensity"):
    return float(xgm.std())

@Variable(title="Scan motor")
def scan_motor(run):
    if not Scantool(run).active:
        raise Skip("Run is not a scan")
    return Scantool(run).motors[0]

@Variable(title="Broken")
def broken(run):
    raise RuntimeError("deliberate failure")

@Variable(title="Image")
def image(run, n: "meta#run_number"):
    return xr.DataArray(np.arange(64.0 * 32).reshape(64, 32) * n, dims=("y", "x"))

@Variable(title="Detector mean", data="proc")
def det_mean(run, img: "var#image"):
    return float(img.mean())
'''


@pytest.fixture
def folder(tmp_path, damnit_folder, mock_proposal):
    """A DAMNIT folder for proposal 1234 with CONTEXT; returns (path, make_defs)."""
    path = damnit_folder(CONTEXT).root

    def make_defs():
        return build_definitions(path, state_dir=tmp_path / "state", with_sensor=False)
    return path, make_defs


@pytest.fixture
def instance(mock_proposal):
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions("p1234_runs", [str(r) for r in mock_proposal.runs])
        yield inst


def run_job(defs, instance, job, run):
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=str(run), raise_on_error=False)
    mats = {".".join(e.asset_key.path[1:]): e.step_materialization_data.materialization
            for e in result.all_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION}
    checks = {".".join(e.asset_check_evaluation_data.asset_key.path[1:]):
              e.asset_check_evaluation_data
              for e in result.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION}
    return result, mats, checks


def test_one_run_writes_files_damnit_reads_and_ui_metadata(folder, instance):
    from damnit.api import Damnit

    path, make_defs = folder
    defs = make_defs()
    result, mats, checks = run_job(defs, instance, "all", 3)
    assert result.success
    assert set(mats) == {"xgm_intensity", "xgm_std", "scan_motor", "image", "det_mean"}
    db = Damnit(path)
    summary = mats["xgm_intensity"].metadata["summary"].value
    assert db[3, "xgm_intensity"].summary() == pytest.approx(summary)
    # title and units are shown with the asset, not repeated in every materialization
    xgm = defs.resolve_asset_graph().get(dg.AssetKey(["p1234", "xgm_intensity"]))
    assert (xgm.metadata["title"], xgm.metadata["units"]) == ("XGM intensity", "uJ")
    assert set(mats["xgm_intensity"].metadata) == {"summary", "hdf5", "duration_s",
                                                   "data_source", "host"}
    # where it was computed and from which data: its provenance, beside the value
    assert mats["xgm_intensity"].metadata["data_source"].value == "all"
    assert mats["xgm_intensity"].metadata["host"].value == socket.gethostname()
    assert db[3, "xgm_std"].read() == pytest.approx(mats["xgm_std"].metadata["summary"].value)
    assert db[3, "scan_motor"].read() == mats["scan_motor"].metadata["summary"].value
    assert db[3, "det_mean"].read() == pytest.approx(3 * (64 * 32 - 1) / 2)
    assert db[3, "image"].read().shape == (64, 32)
    # an image's preview stays in the run's file; the materialization says where
    hdf5 = mats["image"].metadata["hdf5"].value
    assert hdf5.endswith("extracted_data/p1234_r3.h5")
    with h5py.File(hdf5, "r") as f:
        png = f[mats["image"].metadata["preview"].value][()]
    assert png.tobytes().startswith(b"\x89PNG\r\n\x1a\n")
    # the user's print and a header land in the run's process log
    log = (path / "process_logs" / "r3-p1234.out").read_text()
    assert "computing the XGM intensity" in log and "Processing r3 (p1234)" in log


def test_a_failing_variable_fails_only_itself_and_a_skip_is_not_a_failure(folder, instance):
    from damnit.api import Damnit

    path, make_defs = folder
    result, mats, checks = run_job(make_defs(), instance, "all", 1)   # run 1 is no scan
    assert result.success                      # the Dagster run stays green
    assert "broken" not in mats and "scan_motor" not in mats
    assert {"xgm_intensity", "xgm_std", "image", "det_mean"} <= set(mats)
    failed, skipped = checks["broken"], checks["scan_motor"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["error"].value == "deliberate failure"
    assert failed.metadata["error_cls"].value == "RuntimeError"
    assert failed.partition == "1"
    assert not skipped.passed and skipped.severity == dg.AssetCheckSeverity.WARN
    assert skipped.metadata["error"].value == "Run is not a scan"
    assert skipped.metadata["error_cls"].value == "Skip"
    # DAMNIT's table shows the same: the error, and the skip reason
    rows = Damnit(path).table()
    assert rows.loc[rows.run == 1, "xgm_std"].notna().all()


def test_proc_falls_back_to_raw_when_the_run_has_no_proc_data(folder, instance, mock_proposal):
    _, make_defs = folder
    run = mock_proposal.runs_without_proc[0]
    result, mats, checks = run_job(make_defs(), instance, "proc", run)
    assert result.success and "det_mean" not in mats
    assert checks["det_mean"].severity == dg.AssetCheckSeverity.WARN
    assert "no proc data" in checks["det_mean"].description


def test_a_changed_function_makes_it_and_its_dependents_stale_only(folder, instance):
    path, make_defs = folder
    defs = make_defs()
    for run in (1, 2):
        assert run_job(defs, instance, "all", run)[0].success

    def statuses(defs):
        resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(),
                                              LoadingContextForTest(instance))
        return {name: resolver.get_status(dg.AssetKey(["p1234", name]), "2")
                for name in ("xgm_intensity", "xgm_std", "image", "det_mean")}

    assert set(statuses(defs).values()) == {StaleStatus.FRESH}
    ctx = path / "context.py"
    ctx.write_text(ctx.read_text().replace("* n, dims=", "* n * 2, dims="))
    assert statuses(make_defs()) == {
        "xgm_intensity": StaleStatus.FRESH, "xgm_std": StaleStatus.FRESH,
        "image": StaleStatus.STALE, "det_mean": StaleStatus.STALE}
