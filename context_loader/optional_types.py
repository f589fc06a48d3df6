"""Recognise objects of optional libraries (matplotlib, plotly, pandas, xarray) without
importing them: an object of a library that is not loaded cannot exist."""
from __future__ import annotations

import sys


def isinstance_no_import(obj, module: str, cls: str) -> bool:
    """``isinstance(obj, module.cls)``, False without importing ``module`` if it isn't loaded."""
    mod = sys.modules.get(module)
    return mod is not None and isinstance(obj, getattr(mod, cls))


def is_mpl_figure(obj) -> bool:
    return isinstance_no_import(obj, "matplotlib.figure", "Figure")


def is_mpl_axes(obj) -> bool:
    return isinstance_no_import(obj, "matplotlib.axes", "Axes")


def is_plotly_figure(obj) -> bool:
    return isinstance_no_import(obj, "plotly.graph_objs", "Figure")


def is_pd_series(obj) -> bool:
    return isinstance_no_import(obj, "pandas", "Series")


def is_pd_dataframe(obj) -> bool:
    return isinstance_no_import(obj, "pandas", "DataFrame")
