"""Writers killed with SIGKILL at random moments, and concurrent writers of one run.

Writers are forked processes running the real store_fragment on real files. After every
kill the run file must open and hold every variable whose store had returned, the database
must agree, and the next writer must go ahead (no stale lock or temporary file blocks it).
"""
import multiprocessing
import os
import random
import signal
import sqlite3
import time

import h5py
import numpy as np
import pytest
import xarray as xr
from damnit.api import Damnit

from context_loader.cells import Cell
from context_loader.fragment import write_fragment
from damnit_dagster.storage import DamnitDB, store_fragment

P, RUN = 1234, 1
TRIALS = 100
fork = multiprocessing.get_context("fork")


def _shared(i):
    return xr.DataArray(np.full(4, i), dims=["x"], coords={"x": np.arange(4)}, name="shared")


def _killed_writer(root, frag_dir, tag, start, progress):
    """Store fragments for one run forever; after each store returns, log its index."""
    i = start
    while True:
        cells = {f"v{i}": Cell(i), "shared": Cell(_shared(i)),
                 "big": Cell(np.full(50_000, float(i))), "start_time": Cell(float(i))}
        fragment = write_fragment(frag_dir / f"{tag}_{i}.h5", cells, {})
        store_fragment(root, P, RUN, fragment)
        with open(progress, "a") as f:
            f.write(f"{i}\n")
        i += 1


def _check_run(paths, done: list[int]):
    """Everything stored before the kill is intact; the in-flight store is all or nothing."""
    run_file = paths.run_file(P, RUN)
    if not done:
        return
    with h5py.File(run_file, "r") as f:
        f.visititems(lambda name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
        for i in done:
            assert f[f"v{i}/data"][()] == i and f[f".reduced/v{i}"][()] == i
        latest = int(f["start_time/data"][()])
        assert latest in (done[-1], done[-1] + 1)  # the killed store may have completed
        np.testing.assert_array_equal(f["big/data"][()], np.full(50_000, float(latest)))
    xr.testing.assert_identical(xr.load_dataarray(run_file, group="shared", engine="h5netcdf"),
                                _shared(latest))
    with DamnitDB(paths.root) as db:
        rows = db.run_values(P, RUN)
        for i in done:
            assert rows[f"v{i}"]["value"] == i


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_or_loses(tmp_path, damnit_folder):
    paths = damnit_folder(proposal=P)
    frag_dir = tmp_path / "fragments"
    frag_dir.mkdir()
    progress = tmp_path / "progress.txt"
    progress.touch()
    # warm up imports (trendline, NetCDF) once, so forked writers start storing at once
    write_fragment(frag_dir / "warmup.h5", {"x": Cell(np.arange(3.0)), "s": Cell(_shared(0))}, {})
    (frag_dir / "warmup.h5").unlink()
    rng = random.Random(1234)
    done: list[int] = []
    for trial in range(TRIALS):
        start = done[-1] + 1 if done else 0
        child = fork.Process(target=_killed_writer,
                             args=(paths.root, frag_dir, f"t{trial}", start, progress))
        child.start()
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL, f"writer failed in trial {trial}"
        done = [int(x) for x in progress.read_text().split()]
        _check_run(paths, done)
        if trial % 10 == 9:
            # no stale lock or temporary file left by the killed writer blocks the next one
            extra = write_fragment(frag_dir / f"after_{trial}.h5",
                                   {f"after_{trial}": Cell(trial)}, {})
            store_fragment(paths.root, P, RUN, extra, lock_timeout=30)
            with h5py.File(paths.run_file(P, RUN), "r") as f:
                assert f[f"after_{trial}/data"][()] == trial

    assert done, "no store ever completed before a kill"
    # a last store after all the kills succeeds and leaves no temporary file behind
    fragment = write_fragment(frag_dir / "final.h5", {"final": Cell(1.0),
                                                      "start_time": Cell(1.0)}, {})
    store_fragment(paths.root, P, RUN, fragment)
    assert sorted(p.name for p in paths.extracted_dir.iterdir()) == ["p1234_r1.h5",
                                                                     "p1234_r1.h5.lock"]
    conn = sqlite3.connect(paths.db_file)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    api = Damnit(paths.root)
    assert api.runs() == [RUN]
    assert api.table()[f"v{done[-1]}"].iloc[0] == done[-1]


def _concurrent_writer(root, frag_dir, writer, n, go):
    go.wait()
    for k in range(n):
        name = f"w{writer}_{k}"
        cells = {name: Cell(np.arange(k + 1.0)), "last": Cell(writer),
                 "start_time": Cell(float(k))}
        store_fragment(root, P, RUN, write_fragment(frag_dir / f"{name}.h5", cells, {}))


def test_concurrent_writers_lose_nothing(tmp_path, damnit_folder):
    paths = damnit_folder(proposal=P)
    frag_dir = tmp_path / "fragments"
    frag_dir.mkdir()
    go = fork.Event()
    writers = [fork.Process(target=_concurrent_writer, args=(paths.root, frag_dir, w, 20, go))
               for w in range(4)]
    for w in writers:
        w.start()
    go.set()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    names = {f"w{w}_{k}" for w in range(4) for k in range(20)}
    with h5py.File(paths.run_file(P, RUN), "r") as f:
        for name in names:
            k = int(name.split("_")[1])
            np.testing.assert_array_equal(f[f"{name}/data"][()], np.arange(k + 1.0))
            assert f[f".reduced/{name}"].attrs["summary_type"] == "trendline"
        assert f["last/data"][()] in range(4)
    with DamnitDB(paths.root) as db:
        rows = db.run_values(P, RUN)
        assert names <= set(rows) and all(rows[n]["summary_type"] == "trendline" for n in names)
        view_cols = {r[1] for r in db.conn.execute("PRAGMA table_info(runs)")}
        assert names <= view_cols
    assert not list(frag_dir.iterdir())  # every fragment was stored and removed
