"""Images and trendlines for table summaries, in DAMNIT 0.4.0's formats.

matplotlib, plotly, PIL and fpcs are imported inside the functions that need them.
"""
from __future__ import annotations

import io
import logging

import numpy as np

from .optional_types import isinstance_no_import

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 300  # px, larger side of every thumbnail
TRENDLINE_POINTS = 150  # roughly how many points a trendline keeps


class PNGData:
    """PNG file bytes; stored as a 1-D uint8 dataset."""

    def __init__(self, data: bytes):
        self.data = data

    def to_array(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8)


def figure2png(fig, dpi=None) -> PNGData:
    bio = io.BytesIO()
    fig.savefig(bio, dpi=dpi, format="png")
    return PNGData(bio.getvalue())


def figure_thumbnail(fig) -> PNGData:
    """PNG of a matplotlib figure, scaled down so its larger side is <= THUMBNAIL_SIZE."""
    width, height = fig.get_size_inches() * fig.dpi
    zoom = min(1, THUMBNAIL_SIZE / max(width, height))
    return figure2png(fig, dpi=fig.dpi * zoom)


def figure2array(fig) -> np.ndarray:
    """The figure rendered by Agg at its own size and dpi: uint8 RGBA ``(H, W, 4)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    original = fig.canvas
    try:
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.array(canvas.buffer_rgba())
    finally:
        fig.set_canvas(original)


def plotly2png(figure) -> PNGData:
    """PNG of a plotly figure through kaleido, resized (LANCZOS) to a larger side of 300 px.

    Needs kaleido and a Chrome/Chromium it can start; raises otherwise. A failure of the
    browser's page is tried once more (kaleido's tab sometimes runs its script before its
    page has loaded, on a busy machine).
    """
    from PIL import Image

    try:
        png = figure.to_image(format="png")
    except ImportError:
        raise
    except Exception:
        png = figure.to_image(format="png")
    img = Image.open(io.BytesIO(png))
    largest = max(img.width, img.height)
    size = (int(img.width / largest * THUMBNAIL_SIZE), int(img.height / largest * THUMBNAIL_SIZE))
    img = img.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return PNGData(buf.getvalue())


def plotly_json_bytes(figure) -> np.ndarray:
    """A plotly figure as uint8 array of its UTF-8 JSON (how DAMNIT stores it)."""
    return np.frombuffer(figure.to_json().encode("utf-8"), dtype=np.uint8)


def generate_thumbnail(image) -> PNGData:
    """300x300 PNG of a 2-D array (imshow, colour limits at the 1 % and 99 % quantiles)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    vmin = np.nanquantile(image, 0.01)
    vmax = np.nanquantile(image, 0.99)
    if isinstance(image, np.ndarray):
        ax.imshow(image, vmin=vmin, vmax=vmax)
    else:  # DataArray: its own plotting keeps the coordinate orientation
        image.plot.imshow(ax=ax, vmin=vmin, vmax=vmax, add_colorbar=False)
    ax.axis("tight")
    ax.axis("off")
    ax.margins(0, 0)
    # 1 inch square at dpi=THUMBNAIL_SIZE -> THUMBNAIL_SIZE pixels square
    return figure2png(fig, dpi=THUMBNAIL_SIZE)


def line_thumbnail(arr) -> PNGData:
    """600x200 PNG of a 1-D line (used when fpcs is not installed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2 / 3))
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    if isinstance(arr, np.ndarray):
        ax.plot(arr)
    else:
        arr.plot(ax=ax)
    ax.axis("tight")
    ax.axis("off")
    ax.margins(0, 0)
    return figure2png(fig, dpi=THUMBNAIL_SIZE)


def downsample_line(data) -> np.ndarray:
    """Trendline float64 ``(2, N)`` of ``[x; y]`` with N around 150, using ``fpcs``.

    x is the first dimension's coordinate of a DataArray (datetimes as epoch seconds) or
    the index; points are sorted by x. Raises ModuleNotFoundError without fpcs.
    """
    from fpcs import downsample

    x = None
    if isinstance_no_import(data, "xarray", "DataArray"):
        y = data.values
        if data.dims and data.dims[0] in data.coords:
            x = data.coords[data.dims[0]].values
        if x is None or np.shape(x) != np.shape(y):
            x = np.arange(y.size)
    else:
        y = np.asarray(data)
        x = np.arange(y.size)

    if not np.issubdtype(x.dtype, np.number):
        if np.issubdtype(x.dtype, np.datetime64):
            x = x.astype("datetime64[ns]").astype("int64") / 1e9
        else:
            x = np.arange(y.shape[0])

    x = x.astype(np.float64, copy=False)
    y = y.astype(np.float64, copy=False)
    if x.size == 0:
        return np.empty((2, 0), dtype=np.float64)
    if x.size > 1 and not np.all(np.diff(x) >= 0):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]

    # fpcs keeps ~1.25 points per window
    ratio = max(1, int(x.size / (0.8 * TRENDLINE_POINTS)))
    xd, yd = downsample(x, y, ratio=ratio)
    return np.vstack((xd, yd))


def line_summary(data, log_name="unknown"):
    """Summary of a 1-D array: trendline, else (no fpcs) a PNG, else an error string."""
    try:
        return downsample_line(data)
    except ModuleNotFoundError:
        log.warning("Downsampling library not found for trendline generation, "
                    "falling back to thumbnail generation for %s", log_name)
        try:
            return line_thumbnail(data)
        except Exception:
            log.warning("Error generating thumbnail for %s", log_name, exc_info=True)
            return "<thumbnail error>"
    except Exception:
        log.warning("Error generating trendline for %s", log_name, exc_info=True)
        return "<trendline error>"
