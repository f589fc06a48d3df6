"""``Cell``: one variable's result as DAMNIT stores it, with its display options and summary.

A variable may return a ``Cell`` to choose the summary, colours, units or a preview; any other
return value is wrapped as ``Cell(value)``. The constructor applies DAMNIT 0.4.0's checks, so a
value that cannot be saved fails inside the variable (and is recorded as that variable's
error) rather than when the results are written.

matplotlib, plotly and pandas are never imported here: their objects are recognised by the
module that defines their type (:mod:`.optional_types`), so this module works in a
Python that lacks them.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import h5py
import numpy as np
import xarray as xr

from .optional_types import (
    is_mpl_axes,
    is_mpl_figure,
    is_pd_dataframe,
    is_pd_series,
    is_plotly_figure,
)

log = logging.getLogger(__name__)

_COLOUR_RE = re.compile(r"#[0-9A-Fa-f]{6}")


def _check_native(arr: np.ndarray, what: str):
    """Raise TypeError unless HDF5 can store ``arr``'s dtype (as DAMNIT checks it)."""
    if arr.dtype.hasobject:
        raise TypeError(f"{what} cannot be saved")
    if not np.issubdtype(arr.dtype, np.number):
        try:
            h5py.h5t.py_create(arr.dtype, logical=True)
        except TypeError:
            raise TypeError(
                f"{what} whose native array type {arr.dtype} cannot be saved"
            ) from None


class Cell:
    """A variable's result with table display options.

    Parameters
    ----------
    data : number, array-like, str, bytes, xarray object, matplotlib Figure/Axes,
        plotly Figure, pandas Series/DataFrame or None -- the value to store.
    summary : name of a numpy function computing the table value from ``data``.
    summary_value : the table value itself (number or string); wins over ``summary``.
    bold : show the table cell in bold.
    background : cell colour, ``'#rrggbb'`` or three integers 0-255.
    preview : 1-D/2-D numeric array or DataArray, or a matplotlib/plotly figure, shown
        when the cell is opened; it also drives the default summary.
    units : units of the data and summary; defaults to ``data.attrs["units"]`` of a
        DataArray.
    """

    def __init__(self, data, summary=None, summary_value=None, bold=None, background=None,
                 *, preview=None, units=None):
        if is_mpl_axes(data):  # save the whole figure
            data = data.get_figure()

        kept_as_is = (
            is_mpl_figure(data) or is_plotly_figure(data)
            or is_pd_series(data) or is_pd_dataframe(data)
            or isinstance(data, (xr.Dataset, xr.DataArray, str, type(None)))
        )
        if not kept_as_is:
            given_type = type(data)
            data = np.asarray(data)
            _check_native(data, f"Returned data type {given_type}")

        if summary_value is not None and not isinstance(summary_value, str):
            given_type = type(summary_value)
            summary_value = np.asarray(summary_value)
            _check_native(summary_value, f"summary_value of type {given_type}")

        if preview is not None:
            preview = self._check_preview(preview)

        if units is None and isinstance(data, xr.DataArray):
            da_units = data.attrs.get("units")
            if isinstance(da_units, str):
                units = da_units
        if not isinstance(units, (str, type(None))):
            raise TypeError(f"units should be a string, not {type(units)}")

        self.data = data
        self.summary = summary
        self.summary_value = summary_value
        self.bold = bold
        self.background = self._normalize_colour(background)
        self.units = units
        self.preview = preview

    def __repr__(self):
        return f"Cell({type(self.data).__name__}, summary={self.summary!r})"

    @staticmethod
    def _check_preview(preview):
        if isinstance(preview, (np.ndarray, xr.DataArray)):
            if preview.ndim not in (1, 2):
                raise TypeError(
                    f"preview should be a 1D or 2D array (shape is {preview.shape})"
                )
            if not (np.issubdtype(preview.dtype, np.number) or preview.dtype == bool):
                raise TypeError("preview array should be numeric")
            return preview
        if is_mpl_axes(preview):
            return preview.get_figure()
        if is_mpl_figure(preview) or is_plotly_figure(preview):
            return preview
        raise TypeError(
            f"preview must be an array or a figure object (got {type(preview)})"
        )

    @staticmethod
    def _normalize_colour(c):
        if c is None:
            return None
        if isinstance(c, str):
            if not _COLOUR_RE.fullmatch(c):
                raise ValueError(
                    f"Colour string should be hex code (like '#ffcc00'), not {c!r}"
                )
            return np.frombuffer(bytes.fromhex(c[1:]), dtype=np.uint8)
        if isinstance(c, Sequence):
            if len(c) != 3:
                raise TypeError(f"Wrong number of values ({len(c)}) for R,G,B")
            if not all(0 <= v <= 255 for v in c):
                raise ValueError("Colour values must be 0 - 255")
            return np.array(c, dtype=np.uint8)
        raise TypeError(f"Don't understand colour as {type(c)}")

    def get_summary(self, log_name="unknown"):
        """The table value: ``summary_value``, else ``np.<summary>(data)``, else a default.

        Defaults (from ``preview`` if set, else ``data``): strings and 0-d values as they
        are; 1-D -> trendline float64 ``(2, N)``; 2-D -> PNG thumbnail; ndim >= 3 ->
        ``"<dtype>: <shape>"``; Dataset/DataFrame -> ``"Dataset (X.XXMB)"``; figures -> PNG.
        Returns a str, an ndarray, a :class:`~context_loader.thumbnails.PNGData` or None.
        A failing summary method or thumbnail is logged, never raised.
        """
        if self.summary_value is not None:
            return self.summary_value
        if self.data is not None and self.summary is not None:
            try:
                return np.asarray(getattr(np, self.summary)(self.data))
            except Exception:
                log.error("Failed to produce summary data for %s", log_name, exc_info=True)
        return self._default_summary(log_name)

    def _default_summary(self, log_name):
        from . import thumbnails

        data = self.preview if self.preview is not None else self.data
        if is_pd_series(data):
            data = data.to_numpy()

        if isinstance(data, str):
            return data
        if isinstance(data, xr.Dataset):
            return f"Dataset ({data.nbytes / 1e6:.2f}MB)"
        if is_pd_dataframe(data):
            size = data.memory_usage(index=True, deep=True).sum() / 1e6
            return f"DataFrame ({size:.2f}MB)"
        if is_mpl_figure(data):
            return _thumbnail_or_error(thumbnails.figure_thumbnail, data, log_name)
        if is_plotly_figure(data):
            return _thumbnail_or_error(thumbnails.plotly2png, data, log_name)
        if isinstance(data, (np.ndarray, xr.DataArray)):
            if data.ndim == 0:
                return np.asarray(data)
            if data.ndim == 1:
                return thumbnails.line_summary(data, log_name)
            if data.ndim == 2:
                data = np.nan_to_num(data) if isinstance(data, np.ndarray) else data.fillna(0)
                return _thumbnail_or_error(thumbnails.generate_thumbnail, data, log_name)
            # Describe the full data, not the preview
            return f"{self.data.dtype}: {self.data.shape}"
        return None

    def max_diff(self):
        """``|nanmax - nanmin|`` (float64) of a numeric array of 2+ elements, else None.

        As in DAMNIT 0.4.0, bool arrays are not numeric and get None; nor do durations
        (timedelta64 counts as a number to numpy, but its spread is no float, and DAMNIT
        0.4.0 then stores no summary at all). The GUI shows a cell
        in bold by default when this exceeds 1e-9.
        """
        a = self.data
        if is_pd_series(a):
            a = a.to_numpy()
        if (isinstance(a, (np.ndarray, xr.DataArray)) and a.size > 1
                and np.issubdtype(a.dtype, np.number) and a.dtype.kind != "m"):
            a = np.asarray(a)
            return np.abs(np.subtract(np.nanmax(a), np.nanmin(a)), dtype=np.float64)
        return None

    def summary_attrs(self) -> dict:
        """Attributes stored on ``.reduced/<name>`` (only those that are set)."""
        d = {}
        if self.summary is not None:
            d["summary_method"] = self.summary
        if self.bold is not None:
            d["bold"] = self.bold
        if self.background is not None:
            d["background"] = self.background
        if self.units is not None:
            d["units"] = self.units
        if (max_diff := self.max_diff()) is not None:
            d["max_diff"] = max_diff
        return d


def _thumbnail_or_error(make, data, log_name):
    try:
        return make(data)
    except Exception:
        log.warning("Error generating thumbnail for %s", log_name, exc_info=True)
        return "<thumbnail error>"
