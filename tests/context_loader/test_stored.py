"""Inputs read back from a run's file: the objects ``damnit.api`` reads, and which stored
forms cannot stand in for a value."""
import json

import h5py
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from context_loader.cells import Cell
from context_loader.contextfile import ContextFile
from context_loader.fragment import write_fragment
from context_loader.stored import plan, read_inputs, read_value


def run_file(tmp_path, cells, statuses=None):
    path = write_fragment(tmp_path / "run.h5", {n: Cell(v) for n, v in cells.items()}, {})
    with h5py.File(path, "r+") as f:
        for name in cells:
            status = (statuses or {}).get(name, "ok")
            f.create_dataset(f".provenance/{name}", data=json.dumps({"status": status}))
    return path


def test_values_come_back_as_damnit_api_reads_them(tmp_path):
    figure = Figure()
    figure.add_subplot().plot([1, 2])
    array = xr.DataArray(np.arange(6.0).reshape(2, 3), dims=("t", "x"),
                         coords={"x": [1, 2, 3]}, name="arr", attrs={"units": "mm"})
    cells = {"i": np.int32(3), "f": 2.5, "s": "text", "a": np.arange(4, dtype=np.uint16),
             "da": array, "ds": xr.Dataset({"v": array}), "df": pd.DataFrame({"c": [1, 2]}),
             "fig": figure, "nothing": None}
    path = run_file(tmp_path, cells, {"nothing": "none"})
    values, unusable = read_inputs(path, [*cells, "never"])
    assert unusable == {"fig", "never"}
    assert values["i"] == 3 and values["i"].dtype == np.int32
    assert values["f"] == 2.5 and values["s"] == "text" and values["nothing"] is None
    assert values["a"].dtype == np.uint16 and values["a"].tolist() == [0, 1, 2, 3]
    xr.testing.assert_identical(values["da"], array)
    xr.testing.assert_identical(values["ds"], xr.Dataset({"v": array}))
    pd.testing.assert_frame_equal(values["df"], pd.DataFrame({"c": [1, 2]}))
    assert read_value(path, "fig").ndim == 3          # the image, as damnit.api reads it


def test_a_value_without_a_record_or_that_failed_is_computed_again(tmp_path):
    path = run_file(tmp_path, {"a": 1.0, "b": 2.0}, {"b": "error"})
    with h5py.File(path, "r+") as f:
        del f[".provenance/a"]
    assert read_inputs(path, ["a", "b"]) == ({}, {"a", "b"})


def test_the_plan_reads_saved_inputs_and_recomputes_transient_ones(tmp_path):
    ctx = ContextFile.from_str(
        "from damnit_ctx import Variable\n\n"
        "@Variable(title='A')\ndef a(run): return 1\n\n"
        "@Variable(transient=True)\ndef t(run, a: 'var#a'): return a\n\n"
        "@Variable(title='Fig')\ndef fig(run, a: 'var#a'): return a\n\n"
        "@Variable(title='Leaf')\ndef leaf(run, t: 'var#t', f: 'var#fig'): return t + f\n")
    figure = Figure()
    path = run_file(tmp_path, {"a": 1.0, "fig": figure})
    stored = plan(ctx, {"leaf"}, path)
    assert set(stored.compute.vars) == {"t", "fig", "leaf"}
    assert stored.again == {"t", "fig"} and stored.values == {"a": 1.0}


def _stored_objects():
    """DataArrays and Datasets of the kinds contexts return, stored as fragments store
    them: numbers of each kind, coordinates with and without values, times, text."""
    trains = np.arange(10000, 10005, dtype=np.uint64)
    base = xr.DataArray(np.linspace(0, 1, 5, dtype=np.float32), dims="trainId",
                        coords={"trainId": trains}, attrs={"units": "µJ"})
    times = np.datetime64("2026-12-02T10:00", "ns") + np.arange(5) * np.timedelta64(1, "s")
    return {
        "xgm": base,
        "named": base.rename("xgm"),
        "named_like_coord": base.rename("trainId"),
        "no_coords": xr.DataArray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "scalar": xr.DataArray(np.float64(2.5), attrs={"n": 3, "ratios": [0.5, 0.25]}),
        "aux_coord": base.assign_coords(step=("trainId", np.arange(5) // 2)),
        "with_nan": base.where(base > 0.3),
        "booleans": base > 0.5,
        "ints": xr.DataArray(np.arange(5, dtype=np.int64), dims="trainId",
                             coords={"trainId": trains}),
        "times": xr.DataArray(np.arange(5.0), dims="time", coords={"time": times}),
        "durations": xr.DataArray(np.arange(5) * np.timedelta64(1_000_000, "ns"), dims="i"),
        "text_coord": xr.DataArray([1.0, 2.0], dims="m", coords={"m": ["a", "b"]}),
        "text_attrs": base.assign_attrs(labels=["x", "y"], note="plain"),
        "dataset": xr.Dataset({"xgm": base, "n": ("trainId", np.arange(5))},
                              attrs={"source": "SA1_XTD2_XGM/XGM/DOOCS"}),
    }


def test_netcdf_values_read_directly_are_those_xarray_reads(tmp_path):
    """The direct reader of stored DataArrays and Datasets (faster than h5netcdf's) gives
    what ``xr.load_dataarray``/``load_dataset`` give, dtypes included, and leaves to
    h5netcdf what it does not handle (text)."""
    from context_loader.stored import _NotPlain, _read_netcdf_direct, _read_netcdf_h5netcdf

    objects = _stored_objects()
    path = run_file(tmp_path, objects)
    values, unusable = read_inputs(path, objects)
    assert not unusable
    direct = set()
    with h5py.File(path, "r") as f:
        for name, obj in objects.items():
            xr.testing.assert_identical(values[name], obj)
            try:
                fast = _read_netcdf_direct(f[name])
            except _NotPlain:
                continue
            direct.add(name)
            slow = _read_netcdf_h5netcdf(f, name)
            xr.testing.assert_identical(fast, slow)
            assert {k: v.dtype for k, v in fast.variables.items()} == \
                {k: v.dtype for k, v in slow.variables.items()}
    assert direct == set(objects) - {"text_coord", "text_attrs"}
