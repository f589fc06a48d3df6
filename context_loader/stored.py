"""Inputs read back from a run's file instead of being recomputed.

When only some variables of a run are recomputed (``reprocess --stale``, the proc pass),
each saved variable they depend on is read from the run's HDF5 file, as ``damnit.api``'s
``read()`` returns it (arrays with their dtype and shape, DataArrays and Datasets with
their coordinates, pandas objects, strings, scalars). An input whose stored form cannot
stand in for what its function returned is computed again, only to feed its dependents
(it is not stored again): a figure (kept as an image), a Plotly figure, a value that
failed, was skipped or could not be saved, and a value without a provenance record (stored
before records existed, or by DAMNIT). Transient variables are never stored, so they are
always computed again when needed. :func:`read_value` reads any stored value, as the
Dagster side's IO manager does for ``load_asset_value``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import h5py
import numpy as np

from .contextfile import ContextFile
from .hdf5_names import (
    DATAARRAY_NAME,
    DATAARRAY_VARIABLE,
    NETCDF_OBJTYPES,
    OBJTYPE_ATTR,
    PROVENANCE_GROUP,
    PROVENANCE_INDEX,
)

#: Kinds of stored objects that cannot stand in for the original (figures as images).
NOT_INPUTS = ("image", "PlotlyFigure")


@dataclass
class StoredInputs:
    """What an evaluation with stored inputs computes and what it reads.

    ``compute``: the variables to evaluate (the chosen ones and the inputs computed
    again); ``again``: those of them computed only to feed others (never stored or
    reported); ``values``: inputs read from the run file, ``None`` for one that returned
    ``None``.
    """

    compute: ContextFile
    again: set[str] = field(default_factory=set)
    values: dict[str, object] = field(default_factory=dict)


def read_records(f: h5py.File) -> dict[str, dict]:
    """The provenance records of an open run file, by variable name: from its index when
    that lists the same names as ``/.provenance``, else one by one."""
    group = f.get(PROVENANCE_GROUP)
    if not isinstance(group, h5py.Group):
        return {}
    index = f.get(PROVENANCE_INDEX)
    if isinstance(index, h5py.Dataset):
        try:
            records = json.loads(index.asstr()[()])
        except (TypeError, ValueError):
            records = None
        if isinstance(records, dict) and records.keys() == set(group):
            return records
    return {name: json.loads(ds.asstr()[()]) for name, ds in group.items()}


def write_records_index(f: h5py.File, records: dict[str, dict]) -> None:
    """Replace the index of ``f``'s provenance records with ``records`` (all of them)."""
    if PROVENANCE_INDEX in f:
        del f[PROVENANCE_INDEX]
    if records:
        f.create_dataset(PROVENANCE_INDEX, data=json.dumps(records))


class _Unusable(Exception):
    """The stored form of an input cannot stand in for it."""


def _read_plain(group: h5py.Group):
    """A value stored in ``/<name>/data`` (not NetCDF), as ``damnit.api`` reads it."""
    kind = group.attrs.get(OBJTYPE_ATTR, "")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind in NOT_INPUTS:
        raise _Unusable(kind)
    dset = group["data"]
    if kind in ("series", "dataframe"):
        import pandas as pd

        frame = pd.read_parquet(BytesIO(dset[()].tobytes()), engine="pyarrow")
        return frame.iloc[:, 0] if kind == "series" else frame
    if h5py.check_string_dtype(dset.dtype) is not None:
        if dset.ndim == 0:
            return dset[()].decode("utf-8", "surrogateescape")
        return dset.asstr("utf-8", "surrogateescape")[0]
    return dset[()]


#: Attributes h5netcdf keeps for itself: the dimension scales and netCDF-4's ids.
_NETCDF_INTERNAL = frozenset({"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME",
                              "_Netcdf4Coordinates", "_Netcdf4Dimid", "_nc3_strict",
                              "_NCProperties"})
#: How netCDF-4 names the scale of a dimension that has no coordinate variable.
_DIMENSION_ONLY = b"This is a netCDF dimension but not a netCDF variable"


class _NotPlain(Exception):
    """A netCDF group holds something the direct reader leaves to h5netcdf."""


def _plain_attrs(attrs) -> dict:
    """HDF5 attributes as h5netcdf gives them to xarray (one-element arrays unpacked),
    for the kinds a stored value's attributes usually have: text and numbers."""
    out = {}
    for key, value in attrs.items():
        if key in _NETCDF_INTERNAL:
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.ndim == 1:
            value = value[0] if len(value) == 1 else value
        elif not isinstance(value, str) and not (isinstance(value, np.generic)
                                                 and value.dtype.kind in "biuf"):
            raise _NotPlain(key)
        out[key] = value
    return out


def _read_netcdf_direct(group: h5py.Group):
    """The netCDF group of a stored DataArray or Dataset read with h5py and decoded by
    xarray's ``decode_cf``, as ``xr.open_dataset`` gives it for numeric variables without
    h5netcdf's per-variable lookups. Raises :class:`_NotPlain` for anything else (text
    variables, nested groups, attribute kinds h5netcdf converts otherwise)."""
    import xarray as xr

    datasets, dim_names = {}, {}
    for name, dset in group.items():
        if not isinstance(dset, h5py.Dataset) or dset.dtype.kind not in "biuf":
            raise _NotPlain(name)
        datasets[name] = dset
        if dset.attrs.get("CLASS") == b"DIMENSION_SCALE":
            dim_names[int(dset.attrs["_Netcdf4Dimid"])] = name
    variables = {}
    for name, dset in datasets.items():
        attrs = dset.attrs
        if attrs.get("CLASS") == b"DIMENSION_SCALE":
            if attrs["NAME"].startswith(_DIMENSION_ONLY):
                continue
            dims = (name,)
        elif dset.ndim == 0:
            dims = ()
        else:
            ids = attrs.get("_Netcdf4Coordinates")
            if ids is None or len(ids) != dset.ndim:
                raise _NotPlain(name)
            dims = tuple(dim_names[int(i)] for i in ids)
        variables[name] = xr.Variable(dims, dset[()], _plain_attrs(attrs))
    return xr.decode_cf(xr.Dataset(variables, attrs=_plain_attrs(group.attrs)))


def _read_netcdf_h5netcdf(f: h5py.File, name: str):
    """The netCDF group ``name`` as ``xr.load_dataset`` of it reads it."""
    import h5netcdf
    import xarray as xr
    from xarray.backends import H5NetCDFStore

    with h5netcdf.File(f, "r") as nf:
        return xr.open_dataset(H5NetCDFStore(nf, group=name, mode="r")).load()


def _read_netcdf(f: h5py.File, name: str, kind: str):
    """A DataArray or Dataset, as ``xr.load_dataarray``/``load_dataset`` of the group."""
    try:
        obj = _read_netcdf_direct(f[name])
    except (_NotPlain, KeyError, ValueError, TypeError):
        obj = _read_netcdf_h5netcdf(f, name)
    if kind == "dataarray":
        (array,) = obj.data_vars.values()
        if DATAARRAY_NAME in obj.attrs:
            array.name = obj.attrs[DATAARRAY_NAME]
        if array.name == DATAARRAY_VARIABLE:
            array.name = None
        obj = array
    obj.attrs = {k: v for k, v in obj.attrs.items() if not k.startswith("_damnit_")}
    return obj


def warm_up() -> None:
    """Write a tiny DataArray as a fragment stores it, read it back as an input is read
    and reduce it: the first time this runs in a process it finds xarray's backends and
    initialises its indexes and reductions, so processes forked afterwards to recompute
    stale variables from stored inputs start warm (both readers: h5netcdf's for the
    values the direct one leaves to it)."""
    import xarray as xr

    from .cells import Cell
    from .fragment import _write_cell

    array = xr.DataArray(np.arange(8.0), dims="trainId", coords={"trainId": np.arange(8)})
    with h5py.File("warm-up-input.h5", "w", driver="core", backing_store=False) as f:
        _write_cell(f, "warm_up", Cell(array))
        _read_netcdf_h5netcdf(f, "warm_up")
        stored = _read_netcdf(f, "warm_up", "dataarray")
        stored.std()
        stored.mean()


def read_value(run_file, name: str):
    """The stored data of variable ``name`` in ``run_file``, as ``damnit.api``'s
    ``read()`` returns it (a figure as its image array, a Plotly figure as its JSON
    bytes). Raises ``KeyError`` when the file has no data for it."""
    with h5py.File(run_file, "r", locking=False) as f:
        group = f.get(name)
        if not isinstance(group, h5py.Group):
            raise KeyError(f"{run_file} has no data for {name!r}")
        kind = group.attrs.get(OBJTYPE_ATTR, "")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind in NETCDF_OBJTYPES:
            return _read_netcdf(f, name, kind)
        if kind in NOT_INPUTS:
            return group["data"][()]
        return _read_plain(group)


def stored_start_time(run_file) -> float | None:
    """The run's start time stored in ``run_file``; None if it has none."""
    try:
        return float(read_value(run_file, "start_time"))
    except (KeyError, OSError, TypeError, ValueError):
        return None


def read_inputs(run_file, names) -> tuple[dict[str, object], set[str]]:
    """(values, unusable names) of the saved variables ``names`` in ``run_file``: a value
    for each one stored with a result (``None`` when it returned ``None``), the others
    unusable (see the module's text)."""
    run_file = Path(run_file)
    names = set(names)
    if not names or not run_file.is_file():
        return {}, names
    values, unusable = {}, set()
    # Without HDF5's file lock: run files are only ever replaced whole, and a lock a
    # writer's forked sibling inherited must not make the file unreadable.
    with h5py.File(run_file, "r", locking=False) as f:
        records = read_records(f)
        for name in names:
            status = records.get(name, {}).get("status")
            if status == "none":
                values[name] = None
                continue
            group = f.get(name)
            if status != "ok" or not isinstance(group, h5py.Group):
                unusable.add(name)
                continue
            kind = group.attrs.get(OBJTYPE_ATTR, "")
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            try:
                values[name] = (_read_netcdf(f, name, kind) if kind in NETCDF_OBJTYPES
                                else _read_plain(group))
            except (_Unusable, KeyError, OSError, ImportError, ValueError):
                unusable.add(name)
    return values, unusable


def plan(ctx: ContextFile, chosen, run_file) -> StoredInputs:
    """How to evaluate the variables ``chosen`` of ``ctx`` (the whole file) with their
    saved inputs read from ``run_file``: walking up from the chosen variables, a saved
    input is read when it can be, else it is computed again, as every transient one is,
    and the walk goes on through its own inputs."""
    chosen = set(chosen)
    compute, values = set(chosen), {}
    pending = sorted({d for n in chosen for d in ctx.direct_deps(n)} - compute)
    while pending:
        wanted = [n for n in pending if n not in compute and n not in values]
        saved = [n for n in wanted if not ctx.vars[n].transient]
        found, unusable = read_inputs(run_file, saved)
        values.update(found)
        again = [n for n in wanted if ctx.vars[n].transient or n in unusable]
        compute.update(again)
        pending = sorted({d for n in again for d in ctx.direct_deps(n)}
                         - compute - set(values))
    return StoredInputs(ctx.subset(compute), compute - chosen,
                        {n: v for n, v in values.items() if n not in compute})
