"""Per-run HDF5 files in DAMNIT's layout: reading fragments and merging them into run files.

A variable ``<n>`` lives in up to five places of a file: ``/<n>`` (its data: a group with
``data`` or a NetCDF4 group), ``/.reduced/<n>`` (summary), ``/.preview/<n>``,
``/.errors/<n>`` and ``/.provenance/<n>`` (our addition, :mod:`.provenance`). A fragment
holds the results of one evaluation; its root attribute ``cleared`` (our addition) lists
the variables that now returned ``None``.

The re-run rule: every name a fragment mentions (in any of these places, or in
``cleared``) replaces *all five* places of the old file; names it does not mention keep
their old content. The merged file is always written as a new file (see
:func:`merge_into_new_file`), so deleted objects never leave dead space behind.

HDF5's object copy (``H5Ocopy``) does not carry dimension scales correctly
(HDFGroup/hdf5#6200), which breaks NetCDF groups written by h5netcdf for xarray objects.
Groups are therefore copied without attributes, then their scales are re-made and
re-attached, and NetCDF dimension ids are moved past those already in the file.
"""
from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from context_loader.hdf5_names import (
    DAMNIT_GROUPS,
    NETCDF_OBJTYPES,
    OBJTYPE_ATTR,
    PROVENANCE_GROUP,
    PROVENANCE_INDEX,
)
from context_loader.stored import read_records, write_records_index
from damnit_dagster.storage.values import PNG_MAGIC, ReducedValue

SPECIAL_GROUPS = (*DAMNIT_GROUPS, PROVENANCE_GROUP)
CLEARED_ATTR = "cleared"
_SCALE_ATTRS = {"CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST", "DIMENSION_LABELS"}
_DIMID_ATTRS = ("_Netcdf4Dimid", "_Netcdf4Coordinates")
_SEPARATE_ATTRS = {"max_diff", "summary_method", "summary_type"}
#: A fragment replacing at most this many bytes of the run file patches a copy of it.
PATCH_LIMIT = 1 << 20


def _text(value) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def variable_names(f: h5py.File) -> set[str]:
    """Names with anything stored in ``f`` (data, summary, preview or error)."""
    names = {k for k in f if not k.startswith(".")}
    for special in SPECIAL_GROUPS:
        if isinstance(f.get(special), h5py.Group):
            names.update(f[special])
    return names


def cleared_names(f: h5py.File) -> set[str]:
    """The fragment's ``cleared`` attribute: variables that returned ``None``."""
    return {_text(n) for n in np.atleast_1d(f.attrs.get(CLEARED_ATTR, []))}


@dataclass
class Fragment:
    """What one fragment file says about a run."""

    path: Path
    provenance: str
    names: set[str]  # every name it replaces, cleared ones included
    cleared: set[str]
    rows: dict[str, ReducedValue] = field(default_factory=dict)  # for runs.sqlite


def _summary(group: h5py.Group, name: str) -> tuple[object, dict]:
    """The ``.reduced`` dataset ``name`` in ``group`` as DAMNIT puts it in SQLite (str, PNG
    bytes, Python scalar, or ndarray), and its attributes. Numbers and arrays are read with
    h5py's low-level API: a store reads one per value, and a ``Dataset`` object costs
    more than the read."""
    dsid = h5py.h5d.open(group.id, name.encode())
    dtype, shape = dsid.dtype, dsid.shape
    attrs = (dict(h5py.Dataset(dsid).attrs.items()) if h5py.h5a.get_num_attrs(dsid)
             else {})
    if h5py.check_string_dtype(dtype) is not None:
        return h5py.Dataset(dsid).asstr("utf-8", "surrogateescape")[()], attrs
    if shape is None or dtype.kind == "O":
        value = h5py.Dataset(dsid)[()]
    else:
        value = np.empty(shape, dtype)
        dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, value)
    if value.ndim == 1 and dtype == np.uint8 and value[:8].tobytes() == PNG_MAGIC:
        return value.tobytes(), attrs
    return (value.item() if value.ndim == 0 else value), attrs


def _json_attr(value):
    if isinstance(value, np.ndarray):
        return [_json_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return _text(value)
    return value


def read_fragment(path) -> Fragment:
    """The names a fragment replaces and its rows for ``run_variables``.

    A name with a summary gets its summary row, one with an error an error row, and a
    cleared name - or one with data but no summary - a NULL row, so the table never shows
    a stale summary next to new data.
    """
    with h5py.File(path, "r") as f:
        return fragment_of(f)


def fragment_of(f: h5py.File) -> Fragment:
    """:func:`read_fragment` of a fragment already open."""
    cleared = cleared_names(f)
    names = variable_names(f) | cleared
    rows = {n: ReducedValue.cleared() for n in names}
    reduced = f.get(".reduced")
    for name in reduced if isinstance(reduced, h5py.Group) else ():
        value, attrs = _summary(reduced, name)
        max_diff = attrs.get("max_diff")
        rows[name] = ReducedValue(
            value,
            max_diff=None if max_diff is None else float(max_diff),
            summary_method=_text(attrs.get("summary_method", "")),
            summary_type=(None if "summary_type" not in attrs
                          else _text(attrs["summary_type"])),
            attributes={k: _json_attr(v) for k, v in attrs.items()
                        if k not in _SEPARATE_ATTRS},
        )
    for name, ds in f.get(".errors", {}).items():
        rows[name] = ReducedValue.error(_text(ds.asstr()[()]), _text(ds.attrs.get("type", "")))
    provenance = _text(f.attrs.get("provenance", ""))
    return Fragment(Path(f.filename), provenance, names, cleared, rows)


class _Copier:
    """Copies objects between two open files, keeping NetCDF dimension ids unique in the
    destination (NetCDF-C treats them as file-wide, each fragment starts from 0)."""

    def __init__(self, fdst: h5py.File):
        self.fdst = fdst
        self._next_dimid: int | None = None   # found when a NetCDF group is first copied

    @property
    def next_dimid(self) -> int:
        if self._next_dimid is None:
            ids = []

            def collect(_, obj):
                if isinstance(obj, h5py.Dataset) and "_Netcdf4Dimid" in obj.attrs:
                    ids.append(int(obj.attrs["_Netcdf4Dimid"]))
            self.fdst.visititems(collect)
            self._next_dimid = max(ids, default=-1) + 1
        return self._next_dimid

    @next_dimid.setter
    def next_dimid(self, value: int) -> None:
        self._next_dimid = value

    def copy(self, fsrc: h5py.File, path: str) -> None:
        """Copy ``fsrc[path]`` to the same path in the destination (which must be free)."""
        src = fsrc[path]
        parent = posixpath.dirname(src.name)
        if parent != "/":
            self.fdst.require_group(parent)
        if _text(src.attrs.get(OBJTYPE_ATTR, "")) not in NETCDF_OBJTYPES:
            fsrc.copy(src, self.fdst, src.name)  # no dimension scales: HDF5's copy is fine
            return

        objects = [src]
        if isinstance(src, h5py.Group):
            src.visititems(lambda _, obj: objects.append(obj))
        datasets = [o for o in objects if isinstance(o, h5py.Dataset)]
        scales = {d.name: _text(d.attrs.get("NAME", "")) for d in datasets if d.is_scale}
        attachments = [(d.name, i, d.dims[i].label, [s.name for s in d.dims[i].values()])
                       for d in datasets for i in range(d.ndim)
                       if d.dims[i].label or len(d.dims[i])]
        src_ids = [int(v) for d in datasets
                   for v in np.atleast_1d(d.attrs.get("_Netcdf4Dimid", []))]
        offset = self.next_dimid

        # Attributes hold references into the source file: copy without them, rebuild.
        fsrc.copy(src, self.fdst, src.name, without_attrs=True)
        for name, scale_name in scales.items():
            self.fdst[name].make_scale(scale_name)
        for name, index, label, scale_paths in attachments:
            dim = self.fdst[name].dims[index]
            for scale_path in scale_paths:
                dim.attach_scale(self.fdst[scale_path])
            if label:
                dim.label = label
        for obj in objects:
            dst = self.fdst[obj.name]
            for key in obj.attrs:
                if key in _SCALE_ATTRS and (key != "CLASS" or key in dst.attrs):
                    continue
                aid = obj.attrs.get_id(key)
                value = obj.attrs[key]
                if isinstance(obj, h5py.Dataset) and key in _DIMID_ATTRS:
                    value = value + offset
                dst.attrs.create(key, value, shape=aid.shape, dtype=aid.dtype)
        if src_ids:
            self.next_dimid = offset + max(src_ids) + 1


def merge_into_new_file(old_path, fragment, out_path,
                        records: dict[str, dict] | None = None,
                        replaced: set[str] | None = None) -> set[str]:
    """Write ``out_path`` = the run file ``old_path`` (or nothing, if ``None``) with the
    ``fragment`` (its path, or the fragment open for reading) merged in by the re-run
    rule, and the provenance ``records`` of its variables (:mod:`.provenance`) if given.
    Returns the names the fragment replaced (``replaced``, when the caller has read them
    already: :attr:`Fragment.names`).

    When what the fragment replaces is small (:data:`PATCH_LIMIT`, as when ``reprocess
    --stale`` recomputes a few variables) and not all of the old file, ``out_path`` starts
    as a byte copy of the old file, and only the fragment's objects are copied
    (:func:`_patch`): a cost that does not grow with the rest of the run's variables.
    Otherwise it starts as a byte copy of the fragment (a run's first store, or a whole
    run processed again, copies nothing else); everything of the old file
    that the fragment does not replace is then copied in, including root attributes
    (which win over the fragment's) and groups we do not know. The ``cleared`` attribute
    is dropped.
    """
    with contextlib.ExitStack() as stack:
        ffrag = (fragment if isinstance(fragment, h5py.File)
                 else stack.enter_context(h5py.File(fragment, "r")))
        if replaced is None:
            replaced = variable_names(ffrag) | cleared_names(ffrag)
        if old_path is None or not _patch(old_path, ffrag, out_path, replaced, records or {}):
            _rewrite(old_path, ffrag, out_path, replaced, records or {})
    return replaced


def _rewrite(old_path, ffrag: h5py.File, out_path, replaced: set[str],
             records: dict[str, dict]) -> None:
    """:func:`merge_into_new_file` from a copy of the fragment."""
    shutil.copyfile(ffrag.filename, out_path)
    with h5py.File(out_path, "r+") as fout:
        if CLEARED_ATTR in fout.attrs:
            del fout.attrs[CLEARED_ATTR]
        for special in DAMNIT_GROUPS:   # as DAMNIT's files; .provenance only when used
            fout.require_group(special)
        if old_path is None:
            _write_records(fout, records, read_records(fout))
            return
        copier = _Copier(fout)
        with h5py.File(old_path, "r") as fold:
            kept = _merged_records(fold, fout, replaced)
            for key in list(fout.attrs):
                del fout.attrs[key]
            _copy_attrs(fold, fout)
            for key, obj in fold.items():
                if key in SPECIAL_GROUPS and isinstance(obj, h5py.Group):
                    _copy_attrs(obj, fout.require_group(key))
                    for name in obj:
                        if name not in replaced:
                            copier.copy(fold, f"{key}/{name}")
                elif key not in replaced and key != PROVENANCE_INDEX:
                    copier.copy(fold, key)
        _write_records(fout, records, kept)


def _merged_records(fold: h5py.File, ffrag: h5py.File, replaced: set[str]) -> dict:
    """The provenance records of the merged file: the old file's, except the names the
    fragment replaces, and the fragment's."""
    return {**{n: r for n, r in read_records(fold).items() if n not in replaced},
            **read_records(ffrag)}


def _write_records(fout: h5py.File, records: dict[str, dict], kept: dict[str, dict]) -> None:
    """Write ``records`` as ``/.provenance/<name>`` and the index of them and ``kept``."""
    if records:
        group = fout.require_group(PROVENANCE_GROUP)
        for name, record in records.items():
            if name in group:
                del group[name]
            _write_text(group, name, json.dumps(record))
    write_records_index(fout, {**kept, **records})


def _write_text(group: h5py.Group, name: str, text: str) -> None:
    """A scalar UTF-8 string dataset ``name`` in ``group`` (read as ``ds.asstr()[()]``),
    made with h5py's low-level API: a store writes one per value, and ``create_dataset``
    costs about twice as much."""
    data = text.encode()
    string_type = h5py.h5t.C_S1.copy()
    string_type.set_size(len(data))   # JSON text: never empty
    string_type.set_cset(h5py.h5t.CSET_UTF8)
    dataset = h5py.h5d.create(group.id, name.encode(), string_type,
                              h5py.h5s.create(h5py.h5s.SCALAR))
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(data), mtype=string_type)


def _not_worth_patching(f: h5py.File, replaced: set[str]) -> bool:
    """Whether a copy of the fragment is the better start than a copy of ``f``: the names
    ``replaced`` are all of its variables, or hold more than :data:`PATCH_LIMIT` bytes."""
    return _replaces_all(f, replaced) or _replaced_bytes(f, replaced) > PATCH_LIMIT


def _replaces_all(f: h5py.File, replaced: set[str]) -> bool:
    """Whether ``replaced`` holds every variable of ``f``; a count of the root's entries
    (each variable with data has one, besides a few groups) rules out most fragments
    without reading every name."""
    if len(replaced) < len(f) - len(SPECIAL_GROUPS) - 1:
        return False
    return variable_names(f) <= replaced


def _replaced_bytes(f: h5py.File, replaced: set[str]) -> int:
    """How many bytes of data the names ``replaced`` hold in ``f``."""
    sizes = []

    def add(_, obj):
        if isinstance(obj, h5py.Dataset):
            sizes.append(obj.id.get_storage_size())
    for name in replaced:
        for path in (name, *(f"{g}/{name}" for g in SPECIAL_GROUPS)):
            obj = f.get(path)
            if isinstance(obj, h5py.Group):
                obj.visititems(add)
            elif obj is not None:
                add(path, obj)
    return sum(sizes)


def _patch(old_path, ffrag: h5py.File, out_path, replaced: set[str],
           records: dict[str, dict]) -> bool:
    """:func:`merge_into_new_file` from a copy of the old file: the fragment's names
    (``replaced``) are deleted from it (HDF5 reuses most of their space at once), its
    objects copied in. False, with ``out_path`` untouched since the copy, when a copy of
    the fragment is the better start: the fragment replaces every variable of the old
    file (a whole run processed again), or the names it replaces hold more than
    :data:`PATCH_LIMIT` bytes there. An old file larger than that is judged before it is
    copied (a copy thrown away would cost more than opening it once more); a smaller one
    on its copy."""
    judged_first = os.path.getsize(old_path) > PATCH_LIMIT
    if judged_first:
        with h5py.File(old_path, "r") as fold:
            if _not_worth_patching(fold, replaced):
                return False
    shutil.copyfile(old_path, out_path)
    with h5py.File(out_path, "r+") as fout:
        if not judged_first and _not_worth_patching(fout, replaced):
            return False
        kept = _merged_records(fout, ffrag, replaced)
        for name in replaced:
            for path in (name, *(f"{g}/{name}" for g in SPECIAL_GROUPS)):
                if path in fout:
                    del fout[path]
        for special in DAMNIT_GROUPS:
            fout.require_group(special)
        copier = _Copier(fout)
        for key, obj in ffrag.items():
            if key in SPECIAL_GROUPS and isinstance(obj, h5py.Group):
                for name in obj:
                    copier.copy(ffrag, f"{key}/{name}")
            elif key != PROVENANCE_INDEX:
                copier.copy(ffrag, key)
        _write_records(fout, records, kept)
    return True


def _copy_attrs(src, dst):
    for key in src.attrs:
        aid = src.attrs.get_id(key)
        dst.attrs.create(key, src.attrs[key], shape=aid.shape, dtype=aid.dtype)
