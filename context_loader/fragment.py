"""Write one evaluation's results as an HDF5 "fragment" in DAMNIT 0.4.0's layout.

Layout (``<n>`` is a variable name; a dotted group name is one HDF5 name, not nesting)::

    /                 attrs provenance, cleared (names whose value is now None)
    /<n>/data         plain value; group attr _damnit_objtype = image | PlotlyFigure |
                      series | dataframe for figures and pandas objects
    /<n>/...          NetCDF4 group (h5netcdf) for xarray, _damnit_objtype = dataarray | dataset
    /.reduced/<n>     the table summary; attrs summary_method, bold, background (uint8[3]),
                      units, max_diff, summary_type ("trendline") when they apply
    /.preview/<n>     explicit ``Cell(preview=...)`` only
    /.errors/<n>      str(exception); attr type = exception class name

Differences from DAMNIT, on purpose: a name whose Cell has nothing to store (``data`` None,
no ``summary_value``, no ``preview``) is listed in the root attribute ``cleared`` so the
merge can remove its old value; a summary, thumbnail or preview that cannot be made or
stored is logged and left out; data HDF5 cannot store is recorded in ``.errors/<n>`` for
that variable. None of these lose the other variables.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from .cells import Cell
from .hdf5_names import DAMNIT_GROUPS, DATAARRAY_NAME, DATAARRAY_VARIABLE, OBJTYPE_ATTR
from .optional_types import is_mpl_figure, is_pd_dataframe, is_pd_series, is_plotly_figure
from .progress import partial_path
from .thumbnails import PNGData, figure2array, plotly_json_bytes

log = logging.getLogger(__name__)

COMPRESSION_OPTS = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def write_fragment(path, cells: dict[str, Cell], errors: dict[str, BaseException], *,
                   provenance: str = "context.py") -> Path:
    """Write ``cells`` and ``errors`` to the HDF5 file ``path`` and return its path.

    The file is written under a temporary name in the same folder, flushed to disk and
    renamed, so ``path`` is either absent or complete. Mode 0o666, as DAMNIT's files.
    """
    writer = FragmentWriter(path, provenance=provenance)
    try:
        for name, cell in cells.items():
            writer.add(name, cell=cell)
        for name, exc in errors.items():
            writer.add(name, error=exc)
    except BaseException:
        writer.discard()
        raise
    return writer.close()



class FragmentWriter:
    """A fragment written one variable at a time: each :meth:`add` is flushed to
    :func:`partial_path`, so a process that dies while evaluating leaves the variables it
    had finished readable there (:func:`complete_partial`); :meth:`close` fsyncs it and
    renames it to ``path``."""

    def __init__(self, path, *, provenance: str = "context.py"):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self._cleared: list[str] = []
        self._file = h5py.File(self.partial, "w")
        self._file.attrs["provenance"] = provenance
        for group in DAMNIT_GROUPS:
            self._file.require_group(group)
        self._write_cleared()

    def add(self, name: str, *, cell: Cell | None = None,
            error: BaseException | None = None) -> None:
        """Write a variable's result (``cell``) or its ``error``, and flush the file."""
        if error is not None:
            _write_error(self._file, name, str(error), type(error).__name__)
        elif cell.data is None and cell.summary_value is None and cell.preview is None:
            self._cleared.append(name)
            self._write_cleared()
        else:
            _write_cell(self._file, name, cell)
        self._file.flush()

    def _write_cleared(self):
        self._file.attrs["cleared"] = np.array(self._cleared, dtype=h5py.string_dtype())

    def close(self) -> Path:
        """Finish the fragment: ``path`` now holds it (mode 0o666)."""
        self._file.close()
        _finish(self.partial, self.path)
        return self.path

    def discard(self) -> None:
        """Give up: close and remove the partial file."""
        try:
            self._file.close()
        finally:
            self.partial.unlink(missing_ok=True)


def complete_partial(path, errors: dict[str, BaseException]) -> bool:
    """Turn the partial fragment a dead writer left (:func:`partial_path` of ``path``)
    into the fragment ``path``, with ``errors`` (name -> exception) replacing whatever
    those variables have there. False (and nothing written) when there is no
    readable partial file."""
    partial = partial_path(path)
    try:
        f = h5py.File(partial, "r+")
    except OSError:
        return False
    with f:
        cleared = [n for n in f.attrs.get("cleared", []) if n not in errors]
        for name in errors:
            for p in (name, f".reduced/{name}", f".preview/{name}", f".errors/{name}"):
                _delete(f, p)
        for name, exc in errors.items():
            _write_error(f, name, str(exc), type(exc).__name__)
        f.attrs["cleared"] = np.array(cleared, dtype=h5py.string_dtype())
    _finish(partial, Path(path))
    return True


def _finish(tmp: Path, path: Path) -> None:
    """Make the written ``tmp`` durable, shared (0o666) and the file ``path``."""
    _fsync(tmp)
    os.chmod(tmp, 0o666)
    os.replace(tmp, path)
    _fsync(path.parent)


def warm_up() -> None:
    """Write a tiny image and a tiny figure to an in-memory file: the first time this
    runs in a process it imports and initialises the netCDF writer, matplotlib's text
    and image rendering and PNG encoding (several tenths of a second, more than a small
    variable costs), so processes forked afterwards to evaluate runs start warm."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    ax = fig.add_subplot()
    ax.plot([0, 1])
    ax.set_xlabel("warm-up")
    cells = {"image": Cell(xr.DataArray(np.arange(16.0).reshape(4, 4), dims=("y", "x"))),
             "figure": Cell(fig)}
    with h5py.File("warm-up.h5", "w", driver="core", backing_store=False) as f:
        for name, cell in cells.items():
            _write_cell(f, name, cell)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_cell(f: h5py.File, name: str, cell: Cell):
    """Summary, preview and data of one variable; a data failure becomes its error."""
    try:
        summary = cell.get_summary(log_name=name)
        if summary is not None:
            _store_summary(f, name, summary, cell.summary_attrs())
    except Exception:
        log.warning("Could not store the summary of %s", name, exc_info=True)
        _delete(f, f".reduced/{name}")

    if cell.preview is not None:
        try:
            _store_preview(f, name, cell.preview)
        except Exception:
            log.warning("Could not store the preview of %s", name, exc_info=True)
            _delete(f, f".preview/{name}")

    if cell.data is not None:
        try:
            _store_data(f, name, cell.data)
        except Exception as exc:
            log.error("Could not store the data of %s", name, exc_info=True)
            for p in (name, f".reduced/{name}", f".preview/{name}"):
                _delete(f, p)
            _write_error(f, name, f"The result ({type(cell.data).__name__}) could not be "
                                  f"saved: {exc}", type(exc).__name__)


def _write_error(f, name, message: str, type_name: str):
    ds = f.create_dataset(f".errors/{name}", data=message)
    ds.attrs["type"] = type_name


def _delete(f: h5py.File, path: str):
    if path in f:
        del f[path]


def _store_summary(f, name, summary, attrs):
    if isinstance(summary, PNGData):
        summary = summary.to_array()
    elif (isinstance(summary, np.ndarray) and summary.ndim == 2
          and summary.shape[0] == 2):
        attrs["summary_type"] = "trendline"
    ds = f.create_dataset(f".reduced/{name}", data=summary)
    ds.attrs.update(attrs)


def _store_data(f, name, obj):
    """``/<name>``: a NetCDF group for xarray objects, else a group holding ``data``."""
    grp = f.create_group(name)
    if isinstance(obj, xr.DataArray):
        _save_dataarray_netcdf(f, name, obj)
        grp.attrs[OBJTYPE_ATTR] = "dataarray"
    elif isinstance(obj, xr.Dataset):
        _save_dataset_netcdf(f, name, obj)
        grp.attrs[OBJTYPE_ATTR] = "dataset"
    elif is_pd_series(obj):
        frame = obj.to_frame(name=obj.name)
        grp["data"] = np.frombuffer(frame.to_parquet(path=None, engine="pyarrow", index=None),
                                    dtype=np.uint8)
        grp.attrs[OBJTYPE_ATTR] = "series"
    elif is_pd_dataframe(obj):
        grp["data"] = np.frombuffer(obj.to_parquet(path=None, engine="pyarrow", index=None),
                                    dtype=np.uint8)
        grp.attrs[OBJTYPE_ATTR] = "dataframe"
    else:
        value, attrs = _plain_value(obj)
        grp["data"] = value
        grp.attrs.update(attrs)


def _store_preview(f, name, obj):
    path = f".preview/{name}"
    if isinstance(obj, xr.DataArray):
        _save_dataarray_netcdf(f, path, obj)
        f[path].attrs[OBJTYPE_ATTR] = "dataarray"
    else:
        value, attrs = _plain_value(obj)
        f[path] = value
        f[path].attrs.update(attrs)


def _plain_value(obj):
    """(what to store, its attrs) for figures (as arrays) and plain values."""
    if is_mpl_figure(obj):
        return figure2array(obj), {OBJTYPE_ATTR: "image"}
    if is_plotly_figure(obj):
        return plotly_json_bytes(obj), {OBJTYPE_ATTR: "PlotlyFigure"}
    return obj, {}


def _save_dataset_netcdf(f: h5py.File, group: str, dset: xr.Dataset):
    """Write ``dset`` as a NetCDF4 group into the open file (``/`` in names -> ``_``)."""
    import h5netcdf
    from xarray.backends import H5NetCDFStore

    renames = {k: k.replace("/", "_") for k in dset.variables
               if isinstance(k, str) and "/" in k}
    dset = dset.rename_vars(renames)
    with h5netcdf.File(f, "a") as nf:
        store = H5NetCDFStore(nf, group=group, mode="w")
        dset.dump_to_store(store, encoding={k: COMPRESSION_OPTS for k in dset.data_vars})


def _save_dataarray_netcdf(f: h5py.File, group: str, darr: xr.DataArray):
    """As ``DataArray.to_netcdf``: the array becomes a variable of a one-variable Dataset."""
    if darr.name is None:
        dset = darr.to_dataset(name=DATAARRAY_VARIABLE)
    elif darr.name in darr.coords or darr.name in darr.dims:
        # NetCDF can't have a variable named like a coordinate; keep the name aside
        dset = darr.to_dataset(name=DATAARRAY_VARIABLE)
        dset.attrs[DATAARRAY_NAME] = darr.name
    else:
        dset = darr.to_dataset()
    _save_dataset_netcdf(f, group, dset)
