"""Fragments for the storage tests: one variable per return type of the spec.

``results(Cell, Skip)`` builds the same results with either our ``Cell`` or DAMNIT 0.4.0's.
Fragments are written by our writer (``context_loader.fragment.write_fragment``) in-process,
or by DAMNIT's own ``save_fragment`` in a subprocess (``python storage_fragments.py DIR P R``):
importing ``damnit.context`` puts DAMNIT's ``ctxsupport`` first on ``sys.path``, where its
``damnit_ctx`` would shadow ours, so it must never happen inside the test process.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

START_TIME = 1_700_000_000.25


def figures():
    import matplotlib
    matplotlib.use("Agg")
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([1, 3, 2])
    fig2 = Figure(figsize=(1, 1))
    axes = fig2.add_subplot()
    axes.imshow(np.eye(4))
    plotly_fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[4, 1, 2]))
    return fig, axes, plotly_fig


def dataarray_named():
    return xr.DataArray(np.linspace(0, 1, 50), dims=["trainId"],
                        coords={"trainId": np.arange(1000, 1050)},
                        name="Energy", attrs={"units": "uJ", "source": "XGM"})


def dataarray_unnamed():
    return xr.DataArray(np.arange(12.).reshape(3, 4), dims=["y", "x"],
                        coords={"y": [10, 20, 30], "x": np.arange(4) * 0.5})


def dataset():
    return xr.Dataset(
        {"xgm": ("trainId", np.arange(5.), {"units": "uJ"}),
         "phase": ("trainId", np.exp(1j * np.arange(5.))),
         "samx/position": ("trainId", np.arange(5) * 2)},
        coords={"trainId": np.arange(100, 105)}, attrs={"note": "beam"})


def results(Cell, Skip):
    """(cells, errors) covering every return type of the spec, plus Cell options."""
    import pandas as pd

    fig, axes, plotly_fig = figures()
    values = {
        "start_time": START_TIME,
        "n_int": 42,
        "n_float": 2.5,
        "n_nan": float("nan"),
        "flag": True,
        "cplx": 1 + 2j,
        "text": "hello µJ",
        "empty_text": "",
        "numbers": [1, 2, 3],
        "line": np.sin(np.arange(400) / 20),
        "image": np.arange(30.).reshape(5, 6),
        "cube": np.zeros((2, 3, 4)),
        "da_named": dataarray_named(),
        "da_unnamed": dataarray_unnamed(),
        "ds": dataset(),
        "mpl_fig": fig,
        "mpl_axes": axes,
        "series": pd.Series([1.5, 2.5, 3.5], name="s"),
        "frame": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    }
    cells = {name: Cell(v) for name, v in values.items()}
    cells["line_mean"] = Cell(np.arange(10.), summary="mean")
    # DAMNIT's writer makes plotly thumbnails with kaleido+Chrome and loses the whole
    # fragment when that fails: give it a summary_value so both writers can be used.
    cells["plotly_fig"] = Cell(plotly_fig, summary_value="plot")
    cells["cell_full"] = Cell(np.arange(5.), summary_value="five", bold=True,
                              background="#ff0000", units="mm", preview=np.ones((3, 4)))
    cells["summary_only"] = Cell(None, summary_value=7)
    errors = {"broken": RuntimeError("boom"), "skipped": Skip("Run is not a scan")}
    return cells, errors


def write_ours(path, cells=None, errors=None, provenance="context.py") -> Path:
    """A fragment from our writer (the default: every return type)."""
    from context_loader.cells import Cell
    from context_loader.errors import Skip
    from context_loader.fragment import write_fragment

    if cells is None:
        cells, errors = results(Cell, Skip)
    return write_fragment(path, cells, errors or {}, provenance=provenance)


def write_damnit(damnit_dir, proposal: int, run: int) -> Path:
    """A fragment of every return type from DAMNIT 0.4.0's writer (in a subprocess)."""
    out = subprocess.run([sys.executable, __file__, str(damnit_dir), str(proposal), str(run)],
                         capture_output=True, text=True, check=True,
                         env={"MPLBACKEND": "Agg", **__import__("os").environ})
    return Path(json.loads(out.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    import damnit.context as dc

    cells, errors = results(dc.Cell, dc.Skip)
    damnit_dir, proposal, run = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    path = dc.save_fragment(damnit_dir, proposal, run, cells, errors, provenance="context.py")
    print(json.dumps(str(path)))
