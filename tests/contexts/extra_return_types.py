"""Return types the 25-variable baseline context does not cover, for the equivalence
check against DAMNIT 0.4.0 (tests/test_equivalence_damnit.py appends this file to
damnit_dagster/templates/context_25vars.py)."""
import numpy as np
import pandas as pd
import xarray as xr
from extra.components import XGM

from damnit_ctx import Cell, Variable


@Variable(title="Long run")
def is_long(run):
    return len(run.train_ids) > 50


@Variable(title="Complex")
def complex_value(run, n: "meta#run_number"):
    return complex(1.5 * n, -2.0)


@Variable(title="Cube")
def cube(run, n: "meta#run_number"):
    return np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2) * n


@Variable(title="Cube mean", summary="mean")
def cube_summary(run, n: "meta#run_number"):
    return np.arange(4 * 3 * 2, dtype=np.float64).reshape(4, 3, 2) * n


@Variable(title="Styled cell", units="ignored")
def styled_cell(run, xgm: "var#xgm_intensity"):
    return Cell(xgm, summary="max", bold=True, background="#ffcc00", units="µJ")


@Variable(title="RGB cell")
def rgb_cell(run, n: "meta#run_number"):
    return Cell(n * 10, background=(10, 200, 30), bold=False)


@Variable(title="Labels")
def labels(run):
    return xr.DataArray(np.array(["low", "mid", "high"]), dims="level",
                        coords={"level": [0, 1, 2]})


@Variable(title="Trend")
def trend(run, n: "meta#run_number"):
    return np.sin(np.linspace(0, 20, 1000)) * n


@Variable(title="Trend DataArray", units="uJ")
def trend_da(run, xgm: "var#xgm_intensity"):
    return xgm


@Variable(title="Image array")
def image_array(run, n: "meta#run_number"):
    return np.outer(np.arange(40.0), np.arange(60.0)) * n


@Variable(title="Scalars list")
def scalars_list(run):
    return [1.5, 2.5, 4.0]


@Variable(title="numpy scalar")
def np_scalar(run):
    return np.float32(2.5)


@Variable(title="numpy int")
def np_int(run):
    return np.int64(len(run.train_ids))


@Variable(title="Axes")
def axes_plot(run, xgm: "var#xgm_intensity"):
    from matplotlib.figure import Figure
    ax = Figure(figsize=(3, 3)).add_subplot()
    ax.plot(xgm.values)
    return ax


@Variable(title="Summary string cell")
def summary_string(run, n: "meta#run_number"):
    return Cell(np.arange(10.0) * n, summary_value=f"run {n}")


@Variable(title="Photon energy (mean) [keV]", summary="mean")
def photon_energy_units(run):
    return XGM(run).photon_energy(with_units=False)


# --- more return types: pandas, previews, NaN/inf, edge dtypes, unsavable values ---


@Variable(title="Series")
def series(run):
    return pd.Series([1.0, 2.0, 3.5], name="s")


@Variable(title="Frame")
def frame(run):
    return pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]})


@Variable(title="Preview DA")
def preview_da(run):
    return Cell(np.arange(24.0).reshape(2, 3, 4),
                preview=xr.DataArray(np.arange(5.0), dims="x", name="p"))


@Variable(title="Preview fig")
def preview_fig(run):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([1, 2, 3])
    return Cell(np.arange(6.0), preview=fig)


@Variable(title="NaN")
def nan_value(run):
    return float("nan")


@Variable(title="Inf")
def inf_value(run):
    return float("inf")


@Variable(title="NaN array", summary="mean")
def nan_array(run):
    return np.array([np.nan, 1.0, 3.0])


@Variable(title="Bool array")
def bool_array(run):
    return np.array([True, False, True])


@Variable(title="Int sum", summary="sum")
def int_sum(run):
    return np.arange(10)


@Variable(title="String list")
def string_list(run):
    return ["a", "b"]


@Variable(title="0d")
def zero_d(run):
    return np.array(3.25)


@Variable(title="Slash name")
def slash_name(run):
    return xr.DataArray(np.arange(3.0), dims="x", name="a/b", attrs={"units": "mm", "note": "hi"})


@Variable(title="Dataset attrs")
def ds_attrs(run):
    return xr.Dataset({"v": ("t", np.arange(4))}, coords={"t": np.arange(4) * 2},
                      attrs={"source": "x"})


@Variable(title="Empty array")
def empty_array(run):
    return np.array([])


@Variable(title="Summary only")
def summary_only(run):
    return Cell(None, summary_value="just text")


@Variable(title="np bool")
def np_bool(run):
    return np.bool_(False)


@Variable(title="Huge int")
def huge_int(run):
    return 2**70


@Variable(title="Bytes")
def bytes_value(run):
    return b"raw bytes"


@Variable(title="Tuple")
def tuple_value(run):
    return (1, 2, 3)


@Variable(title="Datetime")
def datetime_value(run):
    return np.array(["2024-01-01"], dtype="datetime64[ns]")


@Variable(title="Unicode")
def unicode_value(run):
    return "µJ – ünïcödé"


@Variable(title="Int 2D")
def int_2d(run):
    return np.arange(12, dtype=np.int16).reshape(3, 4)


@Variable(title="Complex array")
def complex_array(run):
    return np.array([1 + 2j, 3 - 1j])


@Variable(title="DA 3D")
def da_3d(run):
    return xr.DataArray(np.zeros((2, 3, 4)), dims=("a", "b", "c"))


@Variable(title="RGB image")
def rgb_image(run):
    return np.zeros((10, 12, 3), dtype=np.uint8)


@Variable(title="Float32 scalar summary", summary="max")
def f32(run):
    return xr.DataArray(np.array([1.5, 2.5], dtype=np.float32), dims="x")
