"""The context of the ``reprocess --stale`` tests: a small graph with every kind of value
(array, DataArray, string, scalar, a transient and a figure). Each function appends its
name and process to ``calls.log`` in the DAMNIT folder, so tests see which ones were
called, and where."""
import os

import numpy as np
import xarray as xr

from damnit_ctx import Variable


def called(name):
    with open("calls.log", "a") as f:
        f.write(f"{name} {os.getpid()}\n")


@Variable(title="Base")
def base(run, n: "meta#run_number"):
    called("base")
    return np.arange(4.0) + n


@Variable(title="Array")
def arr(run, b: "var#base"):
    called("arr")
    return xr.DataArray(b * 2, dims="x", coords={"x": [10, 20, 30, 40]}, name="arr")


@Variable(title="Label")
def label(run, n: "meta#run_number"):
    called("label")
    return f"run {n}"


@Variable(title="Scalar")
def scalar(run, a: "var#arr"):
    called("scalar")
    return float(a.sel(x=20))


@Variable(transient=True)
def tmp(run, b: "var#base"):
    called("tmp")
    return b + 1


@Variable(title="Figure")
def fig(run, b: "var#base"):
    called("fig")
    from matplotlib.figure import Figure
    figure = Figure()
    figure.add_subplot().plot(b)
    return figure


@Variable(title="Axes")
def axes(run, f: "var#fig"):
    called("axes")
    return len(f.axes)


@Variable(title="Leaf")
def leaf(run, s: "var#scalar", lab: "var#label", t: "var#tmp"):
    called("leaf")
    return f"{lab}: {s + t.sum()}"


@Variable(title="Proc sum", data="proc")
def proc_sum(run, b: "var#base"):
    called("proc_sum")
    return float(b.sum())
