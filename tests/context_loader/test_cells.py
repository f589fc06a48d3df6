"""Cell: DAMNIT 0.4.0's checks, units, max_diff and summary rules."""
import io
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from context_loader.cells import Cell
from context_loader.thumbnails import PNGData

# Expressions evaluated with our Cell and with DAMNIT's (in a subprocess): the outcome
# (exception class, or stored data type, summary and summary attributes) must agree.
COMPARED = [
    "Cell(3)", "Cell(2.5)", "Cell(True)", "Cell(1+2j)", "Cell('text')", "Cell(b'xy')",
    "Cell(None)", "Cell([1, 2, 3])", "Cell([[1, 2], [3, 4]])", "Cell(np.arange(200.))",
    "Cell(np.zeros((2, 3, 4)))", "Cell(np.array([1., np.nan, 4.]))",
    "Cell(np.array([True, False]))", "Cell(np.arange(5), summary='mean')",
    "Cell(np.arange(5), summary='no_such')", "Cell(np.arange(5), summary='max', summary_value=1)",
    "Cell(np.arange(5), summary_value='five')", "Cell(None, summary_value=2.5)",
    "Cell(xr.DataArray([1., 2.], attrs={'units': 'uJ'}))",
    "Cell(xr.DataArray([1., 2.], attrs={'units': 'uJ'}), units='mJ')",
    "Cell(xr.DataArray([1., 2.], attrs={'units': 3}))",
    "Cell(xr.DataArray(np.zeros((2, 2, 2))))", "Cell(xr.DataArray(7.0))",
    "Cell(xr.Dataset({'a': ('x', np.arange(1000.))}))",
    "Cell(pd.Series([1., 5., 2.]))", "Cell(pd.DataFrame({'a': [1, 2]}))",
    "Cell(np.zeros((5, 4, 3)), preview=np.arange(4.))",
    "Cell(1, preview=xr.DataArray(np.ones((3, 3))))",
    "Cell(1, bold=True, background='#ffcc00')", "Cell(1, background=(1, 2, 3))",
    "Cell(1, background='#FFCC00')",
    # rejected
    "Cell(['a', 'b'])", "Cell({'a': 1})", "Cell([object()])",
    "Cell(np.datetime64('2024-01-01'))", "Cell(np.array(['2024-01-01'], dtype='M8[s]'))",
    "Cell(1, summary_value=[object()])", "Cell(1, summary_value=['a'])",
    "Cell(1, background='ffcc00')", "Cell(1, background=(1, 2))",
    "Cell(1, background=(0, 0, 256))", "Cell(1, background=5)",
    "Cell(1, background=np.array([1, 2, 3]))",
    "Cell(1, preview=np.zeros((2, 2, 2)))", "Cell(1, preview=np.array(['a']))",
    "Cell(1, preview=[1, 2])", "Cell(1, units=5)",
]

OUTCOME_SRC = '''
def outcome(Cell, expr):
    import numpy as np, pandas as pd, xarray as xr
    try:
        cell = eval(expr, {"Cell": Cell, "np": np, "pd": pd, "xr": xr})
    except Exception as e:
        return ["error", type(e).__name__]
    s = cell.get_summary("x")
    if s is None or isinstance(s, str):
        summary = s
    elif hasattr(s, "data") and isinstance(getattr(s, "data"), bytes):
        summary = "png"
    else:
        s = np.asarray(s)
        summary = [str(s.dtype), list(s.shape), repr(s.tolist())[:300]]
    attrs = {k: repr(np.asarray(v).tolist()) for k, v in cell.summary_attrs().items()}
    return [type(cell.data).__name__, summary, attrs, cell.units]
'''
exec(OUTCOME_SRC)

DAMNIT_SCRIPT = f"""
import json, sys
import damnit.context  # puts DAMNIT's ctxsupport on sys.path
from damnit_ctx import Cell
{OUTCOME_SRC}
print(json.dumps([outcome(Cell, e) for e in json.loads(sys.argv[1])]))
"""


@pytest.fixture(scope="module")
def damnit_outcomes():
    proc = subprocess.run([sys.executable, "-c", DAMNIT_SCRIPT, json.dumps(COMPARED)],
                          capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    return dict(zip(COMPARED, json.loads(proc.stdout.splitlines()[-1])))


@pytest.mark.parametrize("expr", COMPARED)
def test_same_outcome_as_damnit(expr, damnit_outcomes):
    assert json.loads(json.dumps(outcome(Cell, expr))) == damnit_outcomes[expr]  # noqa: F821


# --- our own texts and decisions ---------------------------------------------------

@pytest.mark.parametrize("value, message", [
    (["a", "b"], "Returned data type <class 'list'> whose native array type <U1 cannot be saved"),
    ({"a": 1}, "Returned data type <class 'dict'> cannot be saved"),
    (np.datetime64("2024-01-01"),
     "Returned data type <class 'numpy.datetime64'> whose native array type "
     "datetime64[D] cannot be saved"),
])
def test_unsavable_data_names_the_returned_type(value, message):
    with pytest.raises(TypeError) as exc:
        Cell(value)
    assert str(exc.value) == message


def test_summary_value_type_error_names_its_type():
    with pytest.raises(TypeError, match="summary_value of type <class 'dict'> cannot be saved"):
        Cell(1, summary_value={"a": 1})


@pytest.mark.parametrize("colour", ["#ffcc0011", "#ffcc0", "#gggggg", "ffcc00"])
def test_colour_string_must_be_exactly_rrggbb(colour):
    with pytest.raises(ValueError, match="Colour string should be hex code"):
        Cell(1, background=colour)


def test_colour_forms():
    assert Cell(1, background="#FFcc00").background.tolist() == [255, 204, 0]
    assert Cell(1, background=[0, 128, 255]).background.dtype == np.uint8
    with pytest.raises(TypeError, match=r"Wrong number of values \(2\) for R,G,B"):
        Cell(1, background=[1, 2])
    with pytest.raises(ValueError, match="Colour values must be 0 - 255"):
        Cell(1, background=[1, 2, -1])
    with pytest.raises(TypeError, match="Don't understand colour as <class 'float'>"):
        Cell(1, background=1.0)


def test_values_kept_or_converted():
    da = xr.DataArray([1, 2])
    assert Cell(da).data is da
    assert Cell("s").data == "s"
    assert Cell(None).data is None
    assert Cell(b"ab").data.dtype == "S2"
    arr = Cell([1, 2.5]).data
    assert isinstance(arr, np.ndarray) and arr.tolist() == [1, 2.5]
    assert Cell(True).data.dtype == bool and Cell(True).data.ndim == 0


def test_matplotlib_axes_become_their_figure():
    from matplotlib.figure import Figure
    fig = Figure()
    ax = fig.add_subplot()
    assert Cell(ax).data is fig
    assert Cell(1, preview=ax).preview is fig


def test_preview_checks():
    with pytest.raises(TypeError,
                       match=r"preview should be a 1D or 2D array \(shape is \(2, 2, 2\)\)"):
        Cell(1, preview=np.zeros((2, 2, 2)))
    with pytest.raises(TypeError, match="preview array should be numeric"):
        Cell(1, preview=np.array(["a"]))
    with pytest.raises(TypeError,
                       match=r"preview must be an array or a figure object \(got <class 'list'>\)"):
        Cell(1, preview=[1, 2])
    assert Cell(1, preview=np.array([True, False])).preview.dtype == bool


def test_units():
    da = xr.DataArray([1.0], attrs={"units": "uJ"})
    assert Cell(da).units == "uJ"
    assert Cell(da, units="mJ").units == "mJ"
    assert Cell(xr.DataArray([1.0], attrs={"units": 3})).units is None
    with pytest.raises(TypeError, match="units should be a string, not <class 'int'>"):
        Cell(1, units=5)


def test_max_diff():
    assert Cell(np.array([1.0, np.nan, -3.0])).max_diff() == 4.0
    assert Cell(np.array([[1, 9], [2, 3]])).max_diff() == 8.0
    assert Cell(pd.Series([2.0, 7.0])).max_diff() == 5.0
    assert Cell(xr.DataArray([1.0, 1.5])).max_diff() == 0.5
    assert Cell(np.array([1 + 0j, 4 + 4j])).max_diff() == 5.0
    assert Cell(np.array([5.0])).max_diff() is None
    assert Cell(3.0).max_diff() is None
    assert Cell(np.array([True, False])).max_diff() is None
    assert Cell(np.arange(3) * np.timedelta64(1, "s")).max_diff() is None
    assert Cell("abc").max_diff() is None


def test_summary_attrs_only_when_set():
    assert Cell(1).summary_attrs() == {}
    attrs = Cell(np.arange(3.), summary="sum", bold=False, background="#000001",
                 units="mm").summary_attrs()
    assert attrs["summary_method"] == "sum" and attrs["bold"] is False
    assert attrs["background"].tolist() == [0, 0, 1] and attrs["units"] == "mm"
    assert attrs["max_diff"] == 2.0


def test_summary_order():
    cell = Cell(np.arange(5.), summary="max", summary_value="fixed")
    assert cell.get_summary() == "fixed"
    assert Cell(np.arange(5.), summary="max").get_summary() == 4.0
    assert Cell(np.zeros((3, 3, 3)), summary="mean").get_summary() == 0.0


def test_failing_summary_method_falls_back_to_default(caplog):
    with caplog.at_level(logging.ERROR):
        summary = Cell(np.zeros((2, 3, 4)), summary="not_numpy").get_summary("myvar")
    assert summary == "float64: (2, 3, 4)"
    assert "Failed to produce summary data for myvar" in caplog.text


def test_default_summaries():
    assert Cell(xr.Dataset({"a": ("x", np.zeros(500_000))})).get_summary() == "Dataset (4.00MB)"
    assert Cell(np.zeros((2, 3, 4), dtype=np.int16)).get_summary() == "int16: (2, 3, 4)"
    assert Cell(xr.DataArray(7.0)).get_summary() == 7.0
    line = Cell(pd.Series(np.arange(1000.))).get_summary()
    assert line.shape[0] == 2 and line.shape[1] <= 160 and line.dtype == np.float64
    frame = pd.DataFrame({"a": np.arange(1000)})
    megabytes = frame.memory_usage(deep=True).sum() / 1e6
    assert Cell(frame).get_summary() == f"DataFrame ({megabytes:.2f}MB)"


def test_datetime_coordinate_trendline_uses_epoch_seconds():
    times = np.array(["2024-01-01T00:00:00", "2024-01-01T00:00:10"], dtype="M8[ns]")
    line = Cell(xr.DataArray([1.0, 2.0], dims=["time"], coords={"time": times})).get_summary()
    assert line[0].tolist() == [1704067200.0, 1704067210.0]
    assert line[1].tolist() == [1.0, 2.0]


def _png_size(summary):
    from PIL import Image
    assert isinstance(summary, PNGData)
    return Image.open(io.BytesIO(summary.data)).size


def test_image_thumbnails():
    image = np.random.default_rng(0).normal(size=(50, 80))
    image[3, 3] = np.nan
    assert _png_size(Cell(image).get_summary()) == (300, 300)
    assert _png_size(Cell(xr.DataArray(image)).get_summary()) == (300, 300)
    # the preview, not the data, drives the default summary
    assert _png_size(Cell(np.zeros(3), preview=image).get_summary()) == (300, 300)


def test_figure_thumbnail_is_at_most_300px():
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 2), dpi=100)
    fig.add_subplot().plot([1, 2])
    assert _png_size(Cell(fig).get_summary()) == (300, 75)
    small = Figure(figsize=(1, 1), dpi=100)
    assert _png_size(Cell(small).get_summary()) == (100, 100)  # never enlarged


def test_importable_without_plotting_libraries():
    code = (
        "import sys\n"
        "import context_loader.cells, context_loader.thumbnails, context_loader.fragment\n"
        "print(sorted(m for m in ('matplotlib', 'plotly', 'fpcs', 'PIL') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_plotly_thumbnail_survives_one_failure_of_the_browser_page():
    """kaleido's page sometimes fails on a busy machine; the thumbnail is tried again."""
    from PIL import Image

    from context_loader.thumbnails import plotly2png

    class FlakyFigure:
        calls = 0

        def to_image(self, format):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("ReferenceError: kaleido_scopes is not defined")
            buf = io.BytesIO()
            Image.new("RGB", (700, 500), "white").save(buf, format=format.upper())
            return buf.getvalue()

    figure = FlakyFigure()
    png = plotly2png(figure)
    assert figure.calls == 2
    assert Image.open(io.BytesIO(png.data)).size == (300, 214)
