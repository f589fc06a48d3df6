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
