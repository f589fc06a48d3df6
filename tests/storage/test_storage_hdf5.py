"""Merging fragments into per-run HDF5 files: the re-run rule, NetCDF groups, what is kept."""
import subprocess
import sys

import h5py
import numpy as np
import pytest
import xarray as xr

from context_loader.cells import Cell
from context_loader.fragment import write_fragment
from damnit_dagster.storage.hdf5 import merge_into_new_file, read_fragment, variable_names


def damnit_combine(fragment, target):
    """DAMNIT 0.4.0's own combiner, in a subprocess: importing it here would put DAMNIT's
    ``damnit_ctx`` module in place of ours for the rest of the test session."""
    subprocess.run([sys.executable, "-c",
                    "import sys; from pathlib import Path;"
                    "from damnit.backend.combine import combine;"
                    "combine(Path(sys.argv[1]), Path(sys.argv[2]))", str(fragment), str(target)],
                   check=True, capture_output=True)


def frag(path, errors=None, **values):
    return write_fragment(path, {k: v if isinstance(v, Cell) else Cell(v)
                                 for k, v in values.items()}, errors or {})


def da(name, n, offset=0.0):
    return xr.DataArray(np.arange(n) + offset, dims=["pulse"],
                        coords={"pulse": np.arange(n) * 2}, name=name, attrs={"units": "V"})


def places(path, name):
    with h5py.File(path, "r") as f:
        return {p for p in (name, f".reduced/{name}", f".preview/{name}", f".errors/{name}")
                if p in f}


def test_rerun_rule_replaces_all_places_and_keeps_the_rest(tmp_path):
    f1 = frag(tmp_path / "1.h5", errors={"err_then_ok": ValueError("old error")},
              keep=1, ok_then_err=Cell(np.arange(3.), preview=np.ones((2, 2))),
              ok_then_none=5, arr=np.arange(4))
    run1 = tmp_path / "run1.h5"
    merge_into_new_file(None, f1, run1)
    assert places(run1, "ok_then_err") == {"ok_then_err", ".reduced/ok_then_err",
                                           ".preview/ok_then_err"}

    f2 = frag(tmp_path / "2.h5", errors={"ok_then_err": RuntimeError("new error")},
              err_then_ok=2.5, ok_then_none=None, arr=np.arange(10))
    run2 = tmp_path / "run2.h5"
    replaced = merge_into_new_file(run1, f2, run2)
    assert replaced == {"ok_then_err", "err_then_ok", "ok_then_none", "arr"}

    assert places(run2, "ok_then_err") == {".errors/ok_then_err"}  # data, summary, preview gone
    assert places(run2, "err_then_ok") == {"err_then_ok", ".reduced/err_then_ok"}
    assert places(run2, "ok_then_none") == set()  # our rule: None clears the old value
    with h5py.File(run2, "r") as f:
        assert f["keep/data"][()] == 1 and f[".reduced/keep"][()] == 1
        np.testing.assert_array_equal(f["arr/data"][()], np.arange(10))
        assert f[".errors/ok_then_err"].asstr()[()] == "new error"
        assert f[".errors/ok_then_err"].attrs["type"] == "RuntimeError"
        assert f.attrs["provenance"] == "context.py" and "cleared" not in f.attrs
    # the old file is untouched (the merge always writes a new file)
    assert places(run1, "ok_then_none") == {"ok_then_none", ".reduced/ok_then_none"}


def test_read_fragment_rows(tmp_path):
    path = frag(tmp_path / "f.h5", errors={"bad": KeyError("x")}, a=Cell(np.arange(4.), units="m"),
                gone=None, s="txt")
    with h5py.File(path, "a") as f:  # data without a summary (the summary failed)
        f.create_group("no_summary")["data"] = 3
    fragment = read_fragment(path)
    assert fragment.provenance == "context.py"
    assert fragment.cleared == {"gone"}
    assert fragment.names == {"a", "gone", "s", "bad", "no_summary"}
    a = fragment.rows["a"]
    assert a.summary_type == "trendline" and a.max_diff == 3.0
    assert a.attributes == {"units": "m"}
    assert fragment.rows["s"].value == "txt"
    assert fragment.rows["bad"].attributes == {"error": "'x'", "error_cls": "KeyError"}
    assert fragment.rows["gone"].value is None and fragment.rows["gone"].attributes == {}
    assert fragment.rows["no_summary"].value is None


def test_xarray_survives_repeated_merges(tmp_path):
    run = tmp_path / "run.h5"
    merge_into_new_file(None, frag(tmp_path / "1.h5", x=da("x", 5), y=da("Y", 3)), run)
    for i in range(3):  # each merge copies the kept xarray groups into a new file
        new = tmp_path / f"run{i}.h5"
        merge_into_new_file(run, frag(tmp_path / f"f{i}.h5", z=da(None, 4, i),
                                      w=xr.Dataset({"v": da("v", 2)})), new)
        run = new
    xr.testing.assert_identical(xr.load_dataarray(run, group="x", engine="h5netcdf"), da("x", 5))
    xr.testing.assert_identical(xr.load_dataarray(run, group="y", engine="h5netcdf"), da("Y", 3))
    xr.testing.assert_identical(xr.load_dataarray(run, group="z", engine="h5netcdf"),
                                da(None, 4, 2))
    ids = []
    with h5py.File(run, "r") as f:
        f.visititems(lambda n, o: ids.append(int(o.attrs["_Netcdf4Dimid"]))
                     if isinstance(o, h5py.Dataset) and o.is_scale else None)
        # dimension scales are attached in the new file, not dangling references
        assert f["x/x"].dims[0][0].name == "/x/pulse"
    assert len(ids) == len(set(ids)) == 4  # NetCDF dimension ids stay unique in the file


@pytest.mark.parametrize("again", [{"b": 2}, {"a": 5}], ids=["another variable", "all again"])
def test_unknown_content_of_an_old_file_is_kept(tmp_path, again):
    """Whether the fragment adds a variable or replaces every one (a whole run processed
    again, which starts from a copy of the fragment), what else the old file held stays."""
    run = tmp_path / "run.h5"
    merge_into_new_file(None, frag(tmp_path / "1.h5", a=1), run)
    with h5py.File(run, "a") as f:
        f.attrs["extra"] = "kept"
        f.create_group(".custom")["x"] = [1, 2]
        f[".reduced"].attrs["note"] = 3
    new = tmp_path / "new.h5"
    merge_into_new_file(run, frag(tmp_path / "2.h5", **again), new)
    with h5py.File(new, "r") as f:
        assert f.attrs["extra"] == "kept" and list(f[".custom/x"][()]) == [1, 2]
        assert f[".reduced"].attrs["note"] == 3
        assert variable_names(f) == {"a", *again}
        assert f["a/data"][()] == again.get("a", 1)


@pytest.mark.parametrize("order", ["first", "second"])
def test_same_result_as_damnits_combiner(tmp_path, order):
    """DAMNIT's combiner and ours give the same content for the same fragments (DAMNIT
    keeps a variable that now returns None, so the fragments here have no None)."""
    def fragments(d):
        d.mkdir()
        a = frag(d / "a.h5", errors={"e": ValueError("v")}, x=da("x", 4), s="one",
                 img=np.eye(3), ds=xr.Dataset({"v": da("v", 2)}))
        b = frag(d / "b.h5", errors={"s": RuntimeError("r")}, e=1.5, y=da(None, 6))
        return [a, b] if order == "first" else [b, a]

    theirs = tmp_path / "theirs.h5"
    for f in fragments(tmp_path / "t"):
        damnit_combine(f, theirs)
    ours = None
    for i, f in enumerate(fragments(tmp_path / "o")):
        new = tmp_path / f"ours{i}.h5"
        merge_into_new_file(ours, f, new)
        ours = new

    with h5py.File(theirs, "r") as ft, h5py.File(ours, "r") as fo:
        assert variable_names(ft) == variable_names(fo)
        paths_t, paths_o = [], []
        ft.visit(paths_t.append)
        fo.visit(paths_o.append)
        assert sorted(paths_t) == sorted(paths_o)
        for p in paths_t:
            if isinstance(ft[p], h5py.Dataset):
                np.testing.assert_array_equal(ft[p][()], fo[p][()], err_msg=p)
    for name in ("x", "y", "ds"):
        load = xr.load_dataset
        xr.testing.assert_identical(load(theirs, group=name, engine="h5netcdf"),
                                    load(ours, group=name, engine="h5netcdf"))


@pytest.mark.parametrize("patch_limit", [0, 64, 1 << 30],
                         ids=["rewrite", "patch judged before the copy", "patch"])
def test_provenance_index_follows_every_merge(tmp_path, monkeypatch, patch_limit):
    """The index of a run file's provenance records (read in one go by ``--stale``)
    holds exactly the records of ``/.provenance`` after each merge, whichever way the
    file is written; a file whose index lists other names is read record by record."""
    import json

    from context_loader.stored import read_records
    from damnit_dagster.storage import hdf5

    monkeypatch.setattr(hdf5, "PATCH_LIMIT", patch_limit)
    run = tmp_path / "run.h5"
    old = None
    for i, names in enumerate([("a", "b", "c"), ("b",), ("c", "d")]):
        fragment = frag(tmp_path / f"f{i}.h5", **{n: float(i) for n in names})
        out = tmp_path / f"run{i}.h5"
        merge_into_new_file(old, fragment, out, {n: {"code": f"{n}{i}"} for n in names})
        old = out
    out.rename(run)

    expected = {"a": {"code": "a0"}, "b": {"code": "b1"}, "c": {"code": "c2"},
                "d": {"code": "d2"}}
    with h5py.File(run, "r") as f:
        assert json.loads(f[".provenance_index"].asstr()[()]) == expected
        assert {n: json.loads(ds.asstr()[()]) for n, ds in f[".provenance"].items()} == expected
        assert read_records(f) == expected
    with h5py.File(run, "r+") as f:   # a record removed by another writer
        del f[".provenance/a"]
    with h5py.File(run, "r") as f:
        assert read_records(f) == {n: r for n, r in expected.items() if n != "a"}
