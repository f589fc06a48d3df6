"""Equivalence with DAMNIT 0.4.0: the same context file and runs, stored by DAMNIT and by
us, read back through ``damnit.api`` (and compared file by file) give the same values.

DAMNIT runs only in subprocesses, through its own command line (``damnit init``,
``damnit reprocess --direct``, ``damnit combiner now``): its ``damnit_ctx`` must never be
imported here. The only differences allowed are the ones listed in
``docs/differences-from-damnit.md``; each is named below where the comparison allows it.
"""
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from support.paths import CONTEXTS, MALFORMED_CONTEXTS, REPO

pytestmark = pytest.mark.slow

DOC = REPO / "docs" / "differences-from-damnit.md"
DAMNIT_CLI = Path(sys.executable).parent / "damnit"
PROPOSAL = 1234
RUNS = [3, 4]          # a scan with proc data, and a run without proc data (Skip, no proc)
DAGSTER_RUN = 3        # stored once more through the Dagster assets

#: Variables of the context that return None. Allowed difference "None clears the old
#: value": we store a row with a NULL value (DAMNIT stores nothing), so the name is a
#: pivoted column of Damnit.table() rather than one appended at the end.
RETURNS_NONE = {"returns_none"}

#: Allowed difference "an unsavable value's error names the returned type": DAMNIT's
#: TypeError names numpy.ndarray (the type after its conversion), ours the type the
#: variable returned. Variable name -> (DAMNIT's text, ours) in the error message.
ERROR_TYPE_NAMED = {
    "string_list": ("<class 'numpy.ndarray'>", "<class 'list'>"),
    "huge_int": ("<class 'numpy.ndarray'>", "<class 'int'>"),
}

#: metameta keys whose values differ by nature (a random id, the interpreter path) or by
#: the documented choice to write DAMNIT's defaults explicitly.
METAMETA_DIFFERENT = {"db_id", "damnit_python", "context_python"}
METAMETA_OURS_ONLY = {"noncluster_cpus", "noncluster_mem", "slurm_time"}

#: Columns of run_variables compared as they are (timestamp is the write time).
ROW_COLUMNS = ("version", "value", "max_diff", "provenance", "summary_type",
               "summary_method", "attributes")

#: Malformed context files (tests/malformed_contexts) that DAMNIT 0.4.0 loads without
#: complaint but we refuse at load time (allowed difference "stricter load-time checks").
STRICTER_AT_LOAD = {
    "argument_without_source", "bad_meta_field", "bad_summary", "cluster_not_bool",
    "description_not_string", "duplicate_names", "empty_title", "names_differ_in_case",
    "no_run_argument", "reserved_added_at", "reserved_comment_any_case",
    "reserved_proposal", "reserved_run", "reserved_start_time", "self_outside_group",
    "title_not_string", "transient_not_bool", "unknown_annotation_prefix",
}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def has_browser() -> bool:
    """kaleido (plotly thumbnails) needs a Chrome/Chromium; DAMNIT fails the whole run
    without one, so the plotly variable is only added where one is found."""
    return bool(os.environ.get("BROWSER_PATH")) or any(
        shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome"))


def context_text() -> str:
    parts = [REPO / "damnit_dagster" / "templates" / "context_25vars.py",
             CONTEXTS / "extra_return_types.py"]
    if has_browser():
        parts.append(CONTEXTS / "plotly_return.py")
    return "\n\n".join(p.read_text() for p in parts)


def damnit_env() -> dict:
    """DAMNIT without Kafka (stub producer) and with headless matplotlib."""
    return os.environ | {"AMORE_BROKER": "none", "MPLBACKEND": "Agg"}


def damnit_cli(*args, cwd):
    proc = subprocess.run([str(DAMNIT_CLI), *map(str, args)], cwd=cwd, env=damnit_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"damnit {' '.join(map(str, args))}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def store_ours(folder: Path, context: Path, runs) -> None:
    """Our pipeline without Dagster: one load, one evaluation + store per run."""
    from context_loader.contextfile import ContextFile
    from context_loader.runner import execute
    from damnit_dagster.storage.database import DamnitDB
    from damnit_dagster.storage.writer import store_fragment
    from support.folders import make_damnit_folder

    paths = make_damnit_folder(folder, context, proposal=PROPOSAL)
    ctx = ContextFile.from_path(paths.context_file)
    with DamnitDB(paths.db_file) as db:      # what DAMNIT's --update-vars does
        db.sync_variables(ctx.describe())
    for run in runs:
        fragment = folder / f"fragment_r{run}.h5"
        execute(ctx, PROPOSAL, run, data="all", fragment_path=fragment)
        store_fragment(folder, PROPOSAL, run, fragment)


@pytest.fixture(scope="module")
def stores(mock_proposal, tmp_path_factory):
    """(DAMNIT's folder, our folder), both holding RUNS evaluated with the same context.
    DAMNIT works in subprocesses while we evaluate in this process."""
    tmp = tmp_path_factory.mktemp("equivalence")
    context = tmp / "context.py"
    context.write_text(context_text())
    theirs, ours = tmp / "damnit", tmp / "ours"

    damnit_cli("init", theirs, "--proposal", PROPOSAL, "--context", context, cwd=tmp)
    damnit_cli("db-config", "context_python", sys.executable, cwd=theirs)
    log = open(tmp / "damnit-reprocess.log", "w")
    reprocess = subprocess.Popen([str(DAMNIT_CLI), "reprocess", "--direct", *map(str, RUNS)],
                                 cwd=theirs, env=damnit_env(), stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        store_ours(ours, context, RUNS)
    finally:
        rc = reprocess.wait(timeout=900)
        log.close()
    assert rc == 0, (tmp / "damnit-reprocess.log").read_text()[-5000:]
    damnit_cli("combiner", "now", ".", cwd=theirs)
    for run in RUNS:
        assert (theirs / "extracted_data" / f"p{PROPOSAL}_r{run}.h5").is_file()
    return theirs, ours


@pytest.fixture(scope="module")
def dagster_store(stores, tmp_path_factory):
    """One run stored through the Dagster asset path (the 'all' job of the definitions)."""
    import dagster as dg

    from damnit_dagster.defs.definitions import build_definitions
    from support.folders import make_damnit_folder

    tmp = tmp_path_factory.mktemp("equivalence-dagster")
    folder = make_damnit_folder(tmp / "amore", stores[0] / "context.py", proposal=PROPOSAL).root
    defs = build_definitions(folder, state_dir=tmp / "state", with_sensor=False)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(f"p{PROPOSAL}_runs", [str(DAGSTER_RUN)])
        result = defs.resolve_job_def("all").execute_in_process(
            instance=instance, partition_key=str(DAGSTER_RUN), raise_on_error=False)
    assert result.success
    return folder


@pytest.fixture(params=["direct", "dagster"])
def pair(request, stores):
    """(DAMNIT's folder, one of ours, the runs to compare)."""
    if request.param == "direct":
        return stores[0], stores[1], RUNS
    return stores[0], request.getfixturevalue("dagster_store"), [DAGSTER_RUN]


# --- comparison helpers ------------------------------------------------------------------

def is_png(value) -> bool:
    return isinstance(value, bytes) and value.startswith(PNG_MAGIC) or (
        isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1
        and value[:8].tobytes() == PNG_MAGIC)


def decode_png(value) -> np.ndarray:
    from PIL import Image
    raw = value if isinstance(value, bytes) else value.tobytes()
    return np.asarray(Image.open(io.BytesIO(raw)))


def assert_png_equal(a, b, where, pixels=True):
    """Thumbnails compare as images: same shape and (except plotly's, drawn by a browser)
    the same pixels."""
    ia, ib = decode_png(a), decode_png(b)
    assert ia.shape == ib.shape, f"{where}: thumbnail shape {ia.shape} != {ib.shape}"
    if pixels:
        np.testing.assert_array_equal(ia, ib, err_msg=f"{where}: thumbnail pixels")


def assert_same(a, b, where, name=""):
    """Equal values and equal types: DataArrays/Datasets identical, arrays equal with the
    same dtype, thumbnails as images, scalars and strings of the same type."""
    pixels = not name.startswith("plotly")
    import pandas as pd

    if isinstance(a, (xr.DataArray, xr.Dataset)):
        assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
        xr.testing.assert_identical(a, b)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif is_png(a):
        assert is_png(b), f"{where}: DAMNIT has a PNG, we have {b!r:.80}"
        assert_png_equal(a, b, where, pixels)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{where}: {type(b)}"
        assert (a.dtype, a.shape) == (b.dtype, b.shape), \
            f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.dtype.kind in "fc":
            np.testing.assert_array_equal(a, b, err_msg=where)   # NaNs compare equal
        else:
            assert np.array_equal(a, b), f"{where}: {a!r:.200} != {b!r:.200}"
    elif hasattr(a, "to_plotly_json"):
        assert a.to_plotly_json() == b.to_plotly_json(), where
    else:
        assert type(a) is type(b), f"{where}: {type(a)} ({a!r:.80}) != {type(b)} ({b!r:.80})"
        same_nan = isinstance(a, float) and np.isnan(a) and np.isnan(b)
        assert same_nan or a == b, f"{where}: {a!r:.200} != {b!r:.200}"


def run_variables(folder, runs):
    con = sqlite3.connect(Path(folder) / "runs.sqlite")
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT * FROM run_variables").fetchall()
    con.close()
    return {(r["run"], r["name"]): dict(r) for r in rows if r["run"] in runs}


def query(folder, sql):
    con = sqlite3.connect(Path(folder) / "runs.sqlite")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- the comparisons ---------------------------------------------------------------------

def test_run_variables_rows_are_the_same(pair):
    """Values (summaries), max_diff, summary_type/method, units/bold/background and error
    rows (attributes error/error_cls) of every run and variable."""
    theirs, ours, runs = pair
    a, b = run_variables(theirs, runs), run_variables(ours, runs)
    extra = {k for k in set(b) - set(a) if k[1] in RETURNS_NONE}
    assert set(a) == set(b) - extra, (sorted(set(a) - set(b)), sorted(set(b) - set(a)))
    for key in extra:   # allowed: None is stored as a cleared row
        assert all(b[key][c] is None for c in ("value", "max_diff", "summary_type",
                                               "summary_method", "attributes")), b[key]
    assert len(a) > 30 * len(runs)
    for key in sorted(a):
        if key[1] in ERROR_TYPE_NAMED:   # allowed: the error names the returned type
            theirs_text, ours_text = ERROR_TYPE_NAMED[key[1]]
            attrs_a, attrs_b = json.loads(a[key]["attributes"]), json.loads(b[key]["attributes"])
            assert theirs_text in attrs_a["error"], attrs_a
            attrs_a["error"] = attrs_a["error"].replace(theirs_text, ours_text)
            assert attrs_a == attrs_b
            a[key]["attributes"] = b[key]["attributes"]
        for col in ROW_COLUMNS:
            assert_same(a[key][col], b[key][col], f"run_variables {key} {col}", key[1])
    errors = {k: json.loads(r["attributes"]) for k, r in a.items()
              if r["attributes"] and "error" in r["attributes"]}
    expected = {"RuntimeError", "SourceNameError", "DependencyError"}
    if any(r != 3 for r in runs):   # a run that is no scan skips scan_motor
        expected.add("Skip")
    assert {e["error_cls"] for e in errors.values()} >= expected


def call_both(method, va, vb):
    """``method`` of both VariableData; where DAMNIT's own call fails (e.g. read() of a
    Cell that has only a summary: no data group), ours must fail the same way."""
    try:
        a = getattr(va, method)()
    except Exception as e:
        with pytest.raises(type(e)):
            getattr(vb, method)()
        return None, None
    return a, getattr(vb, method)()


def test_every_variable_reads_the_same_through_damnit_api(pair):
    from damnit.api import Damnit

    theirs, ours, runs = pair
    da, db = Damnit(theirs), Damnit(ours)
    assert set(runs) <= set(db.runs()) and set(runs) <= set(da.runs())
    for run in runs:
        assert da[run].keys() == db[run].keys()
        assert da[run].titles() == db[run].titles()
        for name in da[run].keys():
            va, vb = da[run, name], db[run, name]
            where = f"r{run} {name}"
            assert va.title == vb.title, where
            assert va.units == vb.units, where
            assert_same(*call_both("type_hint", va, vb), f"{where} type_hint()")
            assert_same(*call_both("read", va, vb), f"{where} read()", name)
            assert_same(va.summary(), vb.summary(), f"{where} summary()", name)
            pa, pb = call_both("preview_data", va, vb)
            assert (pa is None) == (pb is None), f"{where} preview_data()"
            if pa is not None:
                assert_same(pa, pb, f"{where} preview_data()", name)


def test_the_run_table_is_the_same(pair):
    """Damnit.table() (names and titles): same columns and values; only the columns of
    variables that returned None may sit elsewhere (they are pivoted, not appended)."""
    import pandas as pd
    from damnit.api import Damnit

    theirs, ours, runs = pair
    titles = dict(query(theirs, "SELECT name, title FROM variables"))
    for with_titles in (False, True):
        ta = Damnit(theirs).table(with_titles=with_titles)
        tb = Damnit(ours).table(with_titles=with_titles)
        # The run number is the second column (by position: run_no is titled "Run" too)
        ta = ta[ta.iloc[:, 1].isin(runs).to_numpy()].reset_index(drop=True)
        tb = tb[tb.iloc[:, 1].isin(runs).to_numpy()].reset_index(drop=True)
        moved = {titles[n] for n in RETURNS_NONE} if with_titles else set(RETURNS_NONE)
        assert sorted(ta.columns) == sorted(tb.columns)
        assert [c for c in ta.columns if c not in moved] == \
            [c for c in tb.columns if c not in moved]
        for col in moved:
            assert ta[col].isna().all() and tb[col].isna().all()
        # put our moved columns where DAMNIT has them, position by position
        positions = []
        for label in ta.columns:
            positions.append(next(i for i, c in enumerate(tb.columns)
                                  if c == label and i not in positions))
        # Only DAMNIT's folder holds the runs we did not store through Dagster: its
        # columns can be object where ours are float, for NAs of those other runs.
        same_runs = set(Damnit(ours).runs()) == set(Damnit(theirs).runs())
        pd.testing.assert_frame_equal(ta, tb.iloc[:, positions], check_dtype=same_runs)


def test_variables_tags_and_run_info_are_the_same(pair):
    theirs, ours, runs = pair
    for sql in ("SELECT * FROM variables ORDER BY name",
                "SELECT vt.variable_name, t.name FROM variable_tags vt"
                " JOIN tags t ON t.id = vt.tag_id ORDER BY 1, 2",
                "SELECT proposal, run, start_time FROM run_info ORDER BY run"):
        a, b = query(theirs, sql), query(ours, sql)
        if "run_info" in sql:
            a, b = [r for r in a if r[1] in runs], [r for r in b if r[1] in runs]
        assert a == b, sql
    ma = dict(query(theirs, "SELECT key, value FROM metameta"))
    mb = dict(query(ours, "SELECT key, value FROM metameta"))
    assert set(mb) - set(ma) == METAMETA_OURS_ONLY and set(ma) <= set(mb)
    assert {k: v for k, v in ma.items() if k not in METAMETA_DIFFERENT} == \
        {k: v for k, v in mb.items() if k in ma and k not in METAMETA_DIFFERENT}


def h5_objects(path):
    f = h5py.File(path, "r")
    objects = {"/": f}
    f.visititems(lambda name, obj: objects.__setitem__(name, obj))
    return f, objects


def norm_attr(f, key, value):
    """Attributes holding object references compare by the names they point to."""
    if key == "DIMENSION_LIST":
        return [[f[ref].name for ref in refs] for refs in value]
    if key == "REFERENCE_LIST":
        return sorted((f[ref].name, int(i)) for ref, i in value)
    return value


def test_hdf5_run_files_are_the_same(pair):
    """Every group and dataset of extracted_data/p1234_rN.h5 (.reduced with its attributes,
    .errors, .preview, data, NetCDF groups): same names, attributes, dtypes, shapes,
    compression and values. NetCDF dimension ids may be numbered differently (allowed:
    they are file-internal), but must pair up one to one."""
    theirs, ours, runs = pair
    for run in runs:
        name = f"extracted_data/p{PROPOSAL}_r{run}.h5"
        fa, oa = h5_objects(theirs / name)
        fb, ob = h5_objects(ours / name)
        # allowed: our provenance records, /.provenance/<name> and their index
        # /.provenance_index ("provenance records")
        ob = {k: v for k, v in ob.items()
              if k.split("/")[0] not in (".provenance", ".provenance_index")}
        with fa, fb:
            assert sorted(oa) == sorted(ob), (sorted(set(oa) - set(ob)), sorted(set(ob) - set(oa)))
            dimids = set()
            for path in sorted(oa):
                a, b = oa[path], ob[path]
                where = f"r{run} {path}"
                parts = path.split("/")
                var = parts[1] if path.startswith(".") and "/" in path else parts[0]
                assert type(a) is type(b), where
                assert sorted(a.attrs) == sorted(b.attrs), where
                for key in a.attrs:
                    x, y = a.attrs[key], b.attrs[key]
                    if key in ("_Netcdf4Dimid", "_Netcdf4Coordinates"):
                        dimids.update(zip(np.atleast_1d(x).tolist(), np.atleast_1d(y).tolist()))
                        continue
                    x, y = norm_attr(fa, key, x), norm_attr(fb, key, y)
                    assert_same(x, y, f"{where} attr {key}")
                if isinstance(a, h5py.Dataset):
                    assert (a.dtype, a.shape) == (b.dtype, b.shape), where
                    assert (a.compression, a.compression_opts, a.shuffle) == \
                        (b.compression, b.compression_opts, b.shuffle), where
                    value_a, value_b = a[()], b[()]
                    if path.startswith(".errors/") and var in ERROR_TYPE_NAMED:
                        theirs_text, ours_text = ERROR_TYPE_NAMED[var]
                        assert theirs_text.encode() in value_a, where
                        value_a = value_a.replace(theirs_text.encode(), ours_text.encode())
                    if is_png(value_a):
                        assert_png_equal(value_a, value_b, where, not var.startswith("plotly"))
                    else:
                        assert_same(value_a, value_b, where)
            left, right = {x for x, _ in dimids}, {y for _, y in dimids}
            assert len(left) == len(right) == len(dimids), f"r{run}: dimension ids {dimids}"


def test_damnit_loads_only_fewer_malformed_contexts_and_the_doc_lists_them(tmp_path):
    """Allowed difference 'stricter load-time checks': the malformed context files DAMNIT
    0.4.0 loads (its ctxrunner, in a subprocess) are exactly STRICTER_AT_LOAD, and the
    doc names each of them."""
    ctxsupport = Path(sys.executable).parents[1] / "lib" / \
        f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / \
        "damnit" / "ctxsupport"
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from ctxrunner import ContextFile\n"
        "loaded = []\n"
        "for p in sorted(Path(sys.argv[1]).glob('*.py')):\n"
        "    try:\n"
        "        ContextFile.from_str(p.read_text(), str(p)).check()\n"
        "    except BaseException:\n"
        "        continue\n"
        "    loaded.append(p.stem)\n"
        "print(json.dumps(loaded))\n")
    env = os.environ | {"PYTHONPATH": str(ctxsupport)}
    proc = subprocess.run([sys.executable, "-c", script,
                           str(MALFORMED_CONTEXTS)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout.strip().splitlines()[-1])) == STRICTER_AT_LOAD
    doc = DOC.read_text()
    missing = [n for n in sorted(STRICTER_AT_LOAD) if not re.search(rf"\b{n}\b", doc)]
    assert not missing, f"{DOC} does not list {missing}"
