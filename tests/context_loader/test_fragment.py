"""write_fragment: DAMNIT 0.4.0's fragment layout, checked against DAMNIT's own writer."""
import inspect
import io
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import xarray as xr
from xarray.testing import assert_identical

from context_loader.cells import Cell
from context_loader.fragment import write_fragment
from support.images import png_size


def make_cases(Cell):
    """One Cell per return type and option; run with our Cell and with DAMNIT's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go
    import xarray as xr

    rng = np.random.default_rng(0)
    image = rng.normal(size=(30, 40))
    image[0, 0] = np.nan
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 3, 2])
    fig2, ax2 = plt.subplots()
    ax2.imshow(np.eye(3))
    fig3, ax3 = plt.subplots(figsize=(2, 2))
    ax3.plot([0, 1])
    plt.close("all")  # closed figures still render; pyplot just forgets them
    return {
        "int_": Cell(3),
        "float_": Cell(2.5),
        "bool_": Cell(True),
        "complex_": Cell(1 + 2j),
        "str_": Cell("hello µJ"),
        "bytes_": Cell(b"xy"),
        "list_": Cell([1, 2, 3.5]),
        "arr1d": Cell(rng.normal(size=500)),
        "arr2d": Cell(image),
        "arr3d": Cell(np.zeros((2, 3, 4))),
        "int2d": Cell(np.arange(12).reshape(3, 4)),
        "bool_arr": Cell(np.array([True, False, True])),
        "empty1d": Cell(np.array([], dtype=float)),
        "da": Cell(xr.DataArray(
            rng.normal(size=200), dims=["trainId"],
            coords={"trainId": np.arange(1000, 1200)}, name="Energy",
            attrs={"units": "uJ", "long_name": "pulse energy"})),
        "da_unnamed": Cell(xr.DataArray(rng.normal(size=(5, 6)), dims=["a", "b"],
                                        coords={"a": np.arange(5)})),
        "da_coordname": Cell(xr.DataArray(np.arange(4.), dims=["x"],
                                          coords={"x": np.arange(4)}, name="x")),
        "da_0d": Cell(xr.DataArray(4.5)),
        "da_complex": Cell(xr.DataArray(np.array([1 + 1j, 2 - 1j]), dims=["p"])),
        "ds": Cell(xr.Dataset(
            {"a/b": ("t", np.arange(10.)), "c": ("t", np.arange(10))},
            coords={"t": ("t", np.arange(10), {"units": "s"})}, attrs={"note": "hi"})),
        "mpl_fig": Cell(fig),
        "mpl_axes": Cell(ax2),
        # DAMNIT loses the whole fragment when kaleido can't run: compare with a
        # summary_value (no thumbnail); the default summary is tested on ours alone
        "plotly": Cell(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), summary_value="plot"),
        "series": Cell(pd.Series([1., 2., 4.], name="s")),
        "dataframe": Cell(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})),
        "none": Cell(None),
        "mean": Cell(np.arange(10.), summary="mean"),
        "bad_summary": Cell(np.arange(300.), summary="no_such_function"),
        "sv_only": Cell(None, summary_value=7),
        "sv_array": Cell(np.arange(3), summary_value=np.array([[1., 2.], [3., 4.]])),
        "styled": Cell(5, bold=True, background="#ffcc00", units="mm"),
        "styled2": Cell("x", bold=False, background=[1, 2, 3]),
        "preview_arr": Cell(np.zeros((5, 4, 3)), preview=np.arange(12.).reshape(4, 3)),
        "preview_da": Cell(np.arange(5), preview=xr.DataArray(
            np.arange(6.), dims=["q"], coords={"q": np.linspace(0, 1, 6)})),
        "preview_fig": Cell(3.0, preview=fig3),
        "start_time": Cell(1.7e9),
        "g.dotted": Cell(np.arange(3)),
    }


def make_errors():
    class MyError(Exception):
        pass
    return {"broken": ValueError("boom"), "mine": MyError("custom\nmultiline µ")}


DAMNIT_SCRIPT = """
import sys
from pathlib import Path
import damnit.context  # puts DAMNIT's ctxsupport (damnit_ctx, damnit_writing) on sys.path
from damnit_ctx import Cell
from damnit_writing import save_fragment
{cases}
{errors}
path = save_fragment(Path(sys.argv[1]), 1234, 1, make_cases(Cell), make_errors(),
                     provenance="context.py")
print(path)
"""


@pytest.fixture(scope="module")
def fragments(tmp_path_factory):
    """(DAMNIT 0.4.0's fragment, ours) for the same cases."""
    tmp = tmp_path_factory.mktemp("fragments")
    script = tmp / "damnit_write.py"
    script.write_text(DAMNIT_SCRIPT.format(cases=inspect.getsource(make_cases),
                                           errors=inspect.getsource(make_errors)))
    proc = subprocess.run([sys.executable, str(script), str(tmp / "damnit")],
                          capture_output=True, text=True, cwd=tmp,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    theirs = proc.stdout.strip().splitlines()[-1]
    ours = write_fragment(tmp / "ours.h5", make_cases(Cell), make_errors())
    return theirs, ours


def _norm(value, f):
    """An attribute or dataset value in a comparable form (references -> target names)."""
    if isinstance(value, h5py.Reference):
        return f[value].name
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return (str(value.dtype), value.shape,
                    [_norm(v, f) for v in value.ravel().tolist()])
        return (str(value.dtype), value.shape, value.tobytes())  # NaN-safe
    if isinstance(value, tuple):  # compound record
        return tuple(_norm(v, f) for v in value)
    if isinstance(value, np.generic):
        return (str(value.dtype), value.tobytes())
    return (type(value).__name__, value)


def _describe(path):
    """{hdf5 path: what a reader sees} for every group and dataset, root included."""
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = {k: _norm(v, f) for k, v in f.attrs.items()}

        def visit(name, obj):
            entry = {"attrs": {k: _norm(v, f) for k, v in obj.attrs.items()}}
            if isinstance(obj, h5py.Dataset):
                htype = obj.id.get_type()
                entry.update(
                    h5class=htype.get_class(), h5size=htype.get_size(),
                    string=h5py.check_string_dtype(obj.dtype), dtype=str(obj.dtype),
                    shape=obj.shape, compression=obj.compression,
                    compression_opts=obj.compression_opts, shuffle=obj.shuffle,
                    value=_norm(obj[()], f),
                )
            out[name] = entry
        f.visititems(visit)
    return out


def _differences(theirs, ours):
    a, b = _describe(theirs), _describe(ours)
    a["/"].pop("cleared", None)  # our addition, checked separately
    b["/"].pop("cleared", None)
    diffs = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        if x is None or y is None:
            diffs.append(f"{key}: only in {'ours' if x is None else 'DAMNIT'}")
            continue
        for field in sorted(set(x) | set(y)):
            if x.get(field) != y.get(field):
                diffs.append(f"{key} {field}: DAMNIT {str(x.get(field))[:200]} "
                             f"ours {str(y.get(field))[:200]}")
    return diffs


def test_same_datasets_dtypes_shapes_attrs_and_values_as_damnit(fragments):
    theirs, ours = fragments
    diffs = _differences(theirs, ours)
    assert not diffs, "\n".join(diffs)
    # and the comparison does see every case
    with h5py.File(ours) as f:
        assert set(make_cases(Cell)) - {"none", "sv_only"} <= set(f)
        assert set(f[".errors"]) == {"broken", "mine"}


def test_differences_are_detected(tmp_path, fragments):
    """The comparison fails on a single changed attribute."""
    theirs, ours = fragments
    changed = tmp_path / "changed.h5"
    changed.write_bytes(ours.read_bytes())
    with h5py.File(changed, "a") as f:
        f[".reduced/da"].attrs["units"] = "mJ"
    diffs = _differences(theirs, changed)
    assert len(diffs) == 1 and diffs[0].startswith(".reduced/da attrs: DAMNIT ")
    assert "mJ" in diffs[0]


def _load_dataarray(path, group):
    da = xr.load_dataarray(path, group=group, engine="h5netcdf")
    da.attrs = {k: v for k, v in da.attrs.items() if not k.startswith("_damnit_")}
    return da


@pytest.mark.parametrize("name", ["da", "da_unnamed", "da_coordname", "da_0d", "da_complex"])
def test_dataarray_round_trip(fragments, name):
    _, ours = fragments
    assert_identical(_load_dataarray(ours, name), make_cases(Cell)[name].data)
    with h5py.File(ours) as f:
        assert f[name].attrs["_damnit_objtype"] == "dataarray"


def test_dataarray_variable_names(fragments):
    _, ours = fragments
    with h5py.File(ours) as f:
        assert set(f["da"]) == {"Energy", "trainId"}
        assert "__xarray_dataarray_variable__" in f["da_unnamed"]
        assert f["da_coordname"].attrs["__xarray_dataarray_name__"] == "x"
        assert f["da/Energy"].compression == "gzip" and f["da/Energy"].shuffle
        assert f["da/Energy"].compression_opts == 1
        assert f["da/trainId"].compression is None  # coords are not compressed


def test_dataset_round_trip_with_slash_renamed(fragments):
    _, ours = fragments
    ds = xr.load_dataset(ours, group="ds", engine="h5netcdf")
    assert ds.attrs.pop("_damnit_objtype") == "dataset"
    expected = make_cases(Cell)["ds"].data.rename_vars({"a/b": "a_b"})
    assert_identical(ds, expected)
    with h5py.File(ours) as f:
        assert f[".reduced/ds"][()].decode() == "Dataset (0.00MB)"


def test_preview_dataarray_round_trip(fragments):
    _, ours = fragments
    assert_identical(_load_dataarray(ours, ".preview/preview_da"),
                     make_cases(Cell)["preview_da"].preview)


def test_scalars_strings_bytes(fragments):
    _, ours = fragments
    with h5py.File(ours) as f:
        assert f["int_/data"][()] == 3 and f["int_/data"].dtype == np.int64
        assert f["float_/data"][()] == 2.5
        assert f["bool_/data"].dtype == bool and f["bool_/data"][()]
        assert f["complex_/data"][()] == 1 + 2j and f["complex_/data"].dtype == np.complex128
        assert f["str_/data"][()].decode() == "hello µJ"
        assert f[".reduced/str_"][()].decode() == "hello µJ"
        assert f["bytes_/data"][()] == b"xy" and f["bytes_/data"].dtype == "S2"
        assert f["list_/data"][()].tolist() == [1, 2, 3.5]
        assert f[".reduced/start_time"][()] == 1.7e9
        assert f["g.dotted/data"][()].tolist() == [0, 1, 2]  # a dot is not nesting


def test_trendline_summary(fragments):
    _, ours = fragments
    with h5py.File(ours) as f:
        line = f[".reduced/arr1d"]
        assert line.dtype == np.float64 and line.shape[0] == 2
        assert 100 <= line.shape[1] <= 160
        assert line.attrs["summary_type"] == "trendline"
        x = line[0]
        assert x[0] == 0 and x[-1] == 499 and np.all(np.diff(x) >= 0)
        data = f["arr1d/data"][()]
        assert np.allclose(line[1], data[x.astype(int)])
        # x of a DataArray trendline is its coordinate
        assert f[".reduced/da"][0, 0] == 1000
        assert f[".reduced/da"].attrs["units"] == "uJ"
        assert f[".reduced/empty1d"].shape == (2, 0)
        # summary_value arrays of shape (2, N) are marked too, as in DAMNIT
        assert f[".reduced/sv_array"].attrs["summary_type"] == "trendline"


def test_thumbnails(fragments):
    _, ours = fragments
    with h5py.File(ours) as f:
        assert png_size(f[".reduced/arr2d"]) == (300, 300)
        assert png_size(f[".reduced/int2d"]) == (300, 300)
        assert png_size(f[".reduced/preview_arr"]) == (300, 300)  # preview drives it
        assert png_size(f[".reduced/mpl_fig"]) == (300, 225)  # 4x3 inch figure
        assert f[".reduced/arr3d"][()].decode() == "float64: (2, 3, 4)"


def test_matplotlib_figure_and_axes_data(fragments):
    _, ours = fragments
    with h5py.File(ours) as f:
        for name, size in [("mpl_fig", (300, 400)), ("mpl_axes", (480, 640))]:
            assert f[name].attrs["_damnit_objtype"] == "image"
            assert f[f"{name}/data"].shape == size + (4,)
            assert f[f"{name}/data"].dtype == np.uint8
        assert f[".preview/preview_fig"].attrs["_damnit_objtype"] == "image"
        assert f[".preview/preview_fig"].shape == (200, 200, 4)
        assert f[".preview/preview_arr"][()].tolist() == np.arange(12.).reshape(4, 3).tolist()


def test_plotly_and_pandas_data(fragments):
    import pandas as pd
    import plotly.io as pio
    _, ours = fragments
    with h5py.File(ours) as f:
        assert f["plotly"].attrs["_damnit_objtype"] == "PlotlyFigure"
        fig = pio.from_json(f["plotly/data"][()].tobytes().decode())
        assert list(fig.data[0].y) == [3, 4]
        assert f["series"].attrs["_damnit_objtype"] == "series"
        series = pd.read_parquet(io.BytesIO(f["series/data"][()].tobytes()))["s"]
        assert series.tolist() == [1., 2., 4.]
        assert f["dataframe"].attrs["_damnit_objtype"] == "dataframe"
        frame = pd.read_parquet(io.BytesIO(f["dataframe/data"][()].tobytes()))
        assert frame.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
        assert f[".reduced/dataframe"][()].decode().startswith("DataFrame (")
        assert f[".reduced/series"].attrs["summary_type"] == "trendline"


def test_cell_options_in_reduced_attrs(fragments):
    _, ours = fragments
    with h5py.File(ours) as f:
        styled = f[".reduced/styled"].attrs
        assert styled["bold"] == True  # noqa: E712 (numpy bool)
        assert styled["background"].tolist() == [255, 204, 0]
        assert styled["background"].dtype == np.uint8
        assert styled["units"] == "mm"
        assert f[".reduced/styled2"].attrs["background"].tolist() == [1, 2, 3]
        assert f[".reduced/styled2"].attrs["bold"] == False  # noqa: E712
        assert f[".reduced/mean"][()] == 4.5
        assert f[".reduced/mean"].attrs["summary_method"] == "mean"
        assert f[".reduced/mean"].attrs["max_diff"] == 9.0
        # a failing summary method falls back to the default (trendline)
        assert f[".reduced/bad_summary"].attrs["summary_type"] == "trendline"
        assert f[".reduced/sv_only"][()] == 7 and "sv_only" not in f
        assert "max_diff" not in f[".reduced/bool_arr"].attrs  # bool is not numeric


def test_errors_provenance_and_cleared(fragments):
    _, ours = fragments
    with h5py.File(ours) as f:
        assert f.attrs["provenance"] == "context.py"
        assert f[".errors/broken"][()].decode() == "boom"
        assert f[".errors/broken"].attrs["type"] == "ValueError"
        assert f[".errors/mine"][()].decode() == "custom\nmultiline µ"
        assert f[".errors/mine"].attrs["type"] == "MyError"
        assert list(f.attrs["cleared"]) == ["none"]
        assert "none" not in f and "none" not in f[".reduced"]
