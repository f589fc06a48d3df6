"""Every return type of the spec, stored by store_fragment and read back through the real
``damnit.api`` (DAMNIT 0.4.0 from PyPI): read(), summary(), table(), units, errors,
thumbnails. Fragments come from our writer and, once, from DAMNIT's own writer."""
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import xarray as xr
from damnit.api import Damnit, DataType

from damnit_dagster.storage import DamnitDB, store_fragment
from support import storage_fragments as sf
from support.folders import make_damnit_folder

PROPOSAL, RUN = 1234, 7
NAMES = ["n_int", "n_float", "n_nan", "flag", "cplx", "text", "empty_text", "numbers", "line",
         "image", "cube", "da_named", "da_unnamed", "ds", "mpl_fig", "mpl_axes", "series",
         "frame", "line_mean", "plotly_fig", "cell_full", "summary_only", "broken", "skipped"]


@pytest.fixture(scope="module", params=["ours", "damnit"])
def stored(request, tmp_path_factory):
    """A DAMNIT folder holding one run with every return type; (Damnit, store result)."""
    root = tmp_path_factory.mktemp(f"amore_{request.param}")
    make_damnit_folder(root, proposal=PROPOSAL)
    with DamnitDB(root) as db:
        db.sync_variables([{"name": n, "title": f"Title {n}", "description": f"about {n}",
                            "tags": ["t"]} for n in NAMES])
    if request.param == "ours":
        fragment = sf.write_ours(root / "fragment.h5")
    else:
        fragment = sf.write_damnit(root, PROPOSAL, RUN)
    summaries = store_fragment(root, PROPOSAL, RUN, fragment)
    assert not fragment.exists()
    return Damnit(root), summaries


def test_runs_start_time_and_keys(stored):
    api, summaries = stored
    assert api.runs() == [RUN]
    assert api[RUN, "start_time"].read() == sf.START_TIME
    assert summaries["start_time"] == sf.START_TIME
    keys = api[RUN].keys()
    # errors are not data; every other variable is there (start_time too)
    assert set(keys) == set(NAMES) - {"broken", "skipped"} | {"start_time"}
    assert api[RUN]["Title n_int"].name == "n_int"  # lookup by title


def test_scalars_and_strings(stored):
    api, summaries = stored
    assert api[RUN, "n_int"].read() == 42 and api[RUN, "n_int"].summary() == 42
    assert api[RUN, "n_float"].summary() == 2.5
    assert np.isnan(api[RUN, "n_nan"].read())
    assert api[RUN, "n_nan"].summary() is None  # NaN is NULL in SQLite
    assert api[RUN, "flag"].read() == True  # noqa: E712 (np.bool_)
    assert api[RUN, "flag"].summary() == 1
    assert api[RUN, "cplx"].read() == 1 + 2j
    assert api[RUN, "cplx"].summary() == 1 + 2j
    assert summaries["cplx"] == 1 + 2j
    assert api[RUN, "text"].read() == "hello µJ" == api[RUN, "text"].summary()
    assert api[RUN, "empty_text"].read() == "" == api[RUN, "empty_text"].summary()
    assert api[RUN, "summary_only"].summary() == 7


def test_arrays_trendlines_and_thumbnails(stored):
    api, _ = stored
    np.testing.assert_array_equal(api[RUN, "numbers"].read(), [1, 2, 3])
    trend = api[RUN, "numbers"].summary()
    np.testing.assert_array_equal(trend, [[0, 1, 2], [1, 2, 3]])
    line = api[RUN, "line"]
    np.testing.assert_allclose(line.read(), np.sin(np.arange(400) / 20))
    assert line.summary().shape[0] == 2 and line.summary().shape[1] <= 200
    np.testing.assert_array_equal(api[RUN, "image"].read(), np.arange(30.).reshape(5, 6))
    assert api[RUN, "image"].summary().startswith(b"\x89PNG")
    assert api[RUN, "cube"].summary() == "float64: (2, 3, 4)"
    assert api[RUN, "line_mean"].summary() == 4.5


def test_xarray_objects_are_identical_after_storing(stored):
    api, _ = stored
    da = api[RUN, "da_named"].read()
    xr.testing.assert_identical(da, sf.dataarray_named())
    assert api[RUN, "da_named"].units == "uJ"
    assert api[RUN, "da_named"].type_hint() is DataType.DataArray
    xr.testing.assert_identical(api[RUN, "da_unnamed"].read(), sf.dataarray_unnamed())
    assert api[RUN, "da_unnamed"].summary().startswith(b"\x89PNG")
    ds = api[RUN, "ds"].read()
    xr.testing.assert_identical(ds, sf.dataset().rename_vars({"samx/position": "samx_position"}))
    assert api[RUN, "ds"].summary() == "Dataset (0.00MB)"


def test_figures_and_pandas(stored):
    api, _ = stored
    img = api[RUN, "mpl_fig"].read()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 4
    assert api[RUN, "mpl_fig"].type_hint() is DataType.Image
    assert api[RUN, "mpl_fig"].summary().startswith(b"\x89PNG")
    assert api[RUN, "mpl_axes"].read().shape[2] == 4
    fig = api[RUN, "plotly_fig"].read()
    assert isinstance(fig, go.Figure) and list(fig.data[0].y) == [4, 1, 2]
    assert json.loads(api[RUN, "plotly_fig"].read(deserialize_plotly=False))["data"]
    pd.testing.assert_series_equal(api[RUN, "series"].read(),
                                   pd.Series([1.5, 2.5, 3.5], name="s"))
    pd.testing.assert_frame_equal(api[RUN, "frame"].read(),
                                  pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))


def test_cell_options_preview_and_units(stored):
    api, _ = stored
    cell = api[RUN, "cell_full"]
    assert cell.summary() == "five"
    assert cell.units == "mm"
    np.testing.assert_array_equal(cell.preview_data(), np.ones((3, 4)))
    row = api._db.conn.execute(
        "SELECT attributes FROM run_variables WHERE name='cell_full'").fetchone()[0]
    assert json.loads(row) == {"bold": True, "background": [255, 0, 0], "units": "mm"}


def test_errors_are_rows_with_the_message(stored):
    api, summaries = stored
    rows = {r[0]: (r[1], json.loads(r[2])) for r in api._db.conn.execute(
        "SELECT name, value, attributes FROM run_variables WHERE name IN ('broken', 'skipped')")}
    assert rows == {"broken": (None, {"error": "boom", "error_cls": "RuntimeError"}),
                    "skipped": (None, {"error": "Run is not a scan", "error_cls": "Skip"})}
    assert summaries["broken"] is None


def test_table(stored):
    api, _ = stored
    table = api.table()
    assert len(table) == 1
    row = table.iloc[0]
    assert row["start_time"] == pd.Timestamp(sf.START_TIME, unit="s", tz="UTC")
    assert row["n_int"] == 42 and row["cplx"] == 1 + 2j and row["text"] == "hello µJ"
    assert row["numbers"] == "<sparkline>" and row["image"] == "<thumbnail>"
    assert row["ds"] == "Dataset (0.00MB)" and row["cell_full"] == "five"
    assert row["broken"] is None and row["n_nan"] is None
    titled = api.table(with_titles=True)
    assert titled.iloc[0]["Title n_int"] == 42 and "Timestamp" in titled.columns
