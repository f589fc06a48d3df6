"""store_fragment: the re-run rule seen through damnit.api and SQL, permissions, locking,
leftovers of killed writers, and failures that must not lose the fragment."""
import json
import stat
import subprocess
import sys

import h5py
import numpy as np
import pytest
from damnit.api import Damnit

from context_loader.cells import Cell
from context_loader.errors import Skip
from context_loader.fragment import write_fragment
from damnit_dagster.storage import DamnitDB, StorageError, store_fragment
from damnit_dagster.storage.layout import DamnitPaths

P = 1234


@pytest.fixture
def amore(damnit_folder):
    paths = damnit_folder(proposal=P)
    with DamnitDB(paths.root) as db:
        db.sync_variables([{"name": n, "title": n} for n in "abcdef"])
    return paths


def store(paths, run, errors=None, start_time=100.0, **values):
    cells = {k: Cell(v) for k, v in values.items()} | {"start_time": Cell(start_time)}
    fragment = write_fragment(paths.root / f"frag_{run}.h5", cells, errors or {})
    return store_fragment(paths.root, P, run, fragment)


def sql(paths, run):
    with DamnitDB(paths.root) as db:
        return {n: (r["value"], json.loads(r["attributes"]) if r["attributes"] else None)
                for n, r in db.run_values(P, run).items()}


def test_rerun_rule_through_the_api(amore):
    first = store(amore, 1, errors={"c": RuntimeError("c failed")}, a=1, b=[1.0, 2.0], d=5)
    assert first["a"] == 1 and first["c"] is None and first["start_time"] == 100.0
    second = store(amore, 1, errors={"a": Skip("not a scan")}, b=None, c=3, e="new",
                   start_time=200.0)
    assert second == {"a": None, "b": None, "c": 3, "e": "new", "start_time": 200.0}

    api = Damnit(amore.root)
    assert api[1].keys() == ["c", "d", "e", "start_time"]
    assert api[1, "c"].read() == 3 and api[1, "d"].read() == 5 and api[1, "e"].read() == "new"
    assert api[1, "start_time"].read() == 200.0
    rows = sql(amore, 1)
    assert rows["a"] == (None, {"error": "not a scan", "error_cls": "Skip"})  # error replaced data
    assert rows["b"] == (None, None)  # returned None: old value cleared
    assert rows["c"] == (3, None)  # success replaced the error
    assert rows["d"] == (5, None)  # not computed this time: kept
    table = api.table().iloc[0]
    assert table["e"] == "new" and table["b"] is None and table["a"] is None
    with h5py.File(amore.run_file(P, 1), "r") as f:
        assert ".errors/c" not in f and "a" not in f and ".reduced/a" not in f and "b" not in f


def test_files_are_shared_and_leftovers_cleaned(amore):
    stale = amore.extracted_dir / "p1234_r2.h5.abc123.tmp"
    stale.write_bytes(b"half a file from a killed writer")
    store(amore, 2, a=1)
    assert not stale.exists()
    assert stat.S_IMODE(amore.run_file(P, 2).stat().st_mode) == 0o666
    assert stat.S_IMODE(amore.run_lock(P, 2).stat().st_mode) == 0o666
    assert stat.S_IMODE(amore.extracted_dir.stat().st_mode) == 0o777
    assert sorted(p.name for p in amore.extracted_dir.iterdir()) == ["p1234_r2.h5",
                                                                     "p1234_r2.h5.lock"]


def test_storing_the_same_fragment_twice_is_harmless(amore):
    fragment = write_fragment(amore.root / "f.h5", {"a": Cell(np.arange(5.)), "b": Cell(2),
                                                   "start_time": Cell(1.0)}, {})
    first = store_fragment(amore.root, P, 3, fragment, delete_fragment=False)
    again = store_fragment(amore.root, P, 3, fragment)
    assert first.keys() == again.keys() and not fragment.exists()
    np.testing.assert_array_equal(Damnit(amore.root)[3, "a"].read(), np.arange(5.))


def test_failures_keep_the_fragment_and_the_run_file(amore):
    store(amore, 4, a=1)
    before = amore.run_file(P, 4).read_bytes()

    bad = write_fragment(amore.root / "bad.h5", {"bad name": Cell(1)}, {})
    with pytest.raises(StorageError, match="Invalid variable name 'bad name'"):
        store_fragment(amore.root, P, 4, bad)
    assert bad.exists() and amore.run_file(P, 4).read_bytes() == before

    garbage = amore.root / "garbage.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(StorageError, match="Cannot read the fragment .*garbage.h5"):
        store_fragment(amore.root, P, 4, garbage)
    assert garbage.exists()

    with pytest.raises(StorageError, match="No DAMNIT database at .*runs.sqlite"):
        store_fragment(amore.root / "nowhere", P, 4, bad)


def test_a_held_lock_times_out_with_a_clear_error(amore):
    lock = amore.run_lock(P, 5)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         f"f = open({str(lock)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
         "print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        fragment = write_fragment(amore.root / "f.h5", {"a": Cell(1)}, {})
        with pytest.raises(StorageError,
                           match=r"Timed out after 0.3 s waiting for .*p1234_r5.h5.lock"):
            store_fragment(amore.root, P, 5, fragment, lock_timeout=0.3)
        assert fragment.exists() and not amore.run_file(P, 5).exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without unlocking: the kernel released its lock
    assert store_fragment(amore.root, P, 5, fragment)["a"] == 1


def test_layout_paths(tmp_path):
    paths = DamnitPaths(tmp_path)
    assert paths.run_lock(P, 9).name == "p1234_r9.h5.lock"
    assert paths.extracted_dir == tmp_path / "extracted_data"
