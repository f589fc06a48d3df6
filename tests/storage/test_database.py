"""runs.sqlite: DAMNIT's schema v4, settings, value encodings, views, variables and tags."""
import json
import re
import sqlite3
import stat
import subprocess
import sys

import numpy as np
import pytest
from damnit.backend.db import DamnitDB as DamnitsDB

from damnit_dagster.storage import DamnitDB, ReducedValue, init_damnit_dir
from damnit_dagster.storage.values import PNG_MAGIC


def _normalized_schema(conn):
    def norm(sql):
        sql = re.sub(r"--[^\n]*", "", sql or "")
        sql = re.sub(r"\s+", " ", sql)
        return re.sub(r"\s*([(),;])\s*", r"\1", sql).strip()
    return sorted((r[0], r[1], norm(r[2])) for r in conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))


def test_new_database_has_damnits_v4_schema_and_settings(tmp_path):
    ours = DamnitDB.create(tmp_path / "ours", 1234)
    (tmp_path / "theirs").mkdir()
    theirs = DamnitsDB.from_dir(tmp_path / "theirs", create=True)
    assert _normalized_schema(ours.conn) == _normalized_schema(theirs.conn)
    assert ours.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    meta = ours.metameta.to_dict()
    assert meta["data_format_version"] == 4
    assert re.fullmatch(r"[0-9a-f]{40}", meta["db_id"])
    assert meta["proposal"] == 1234
    assert {"damnit_python", "context_python", "concurrent_jobs", "noncluster_cpus",
            "noncluster_mem"} <= set(meta)
    assert ours.setting("noncluster_cpus") == "4"
    assert ours.setting("noncluster_mem") == "25G"
    assert ours.setting("slurm_partition") == ""  # unset: DAMNIT's default
    ours.metameta["slurm_reservation"] = "upex_001234"
    assert ours.setting("slurm_reservation") == "upex_001234"
    del ours.metameta["slurm_reservation"]
    assert "slurm_reservation" not in ours.metameta
    ours.close()

    # DAMNIT opens it without migrating, and sees the same settings
    with DamnitsDB.from_dir(tmp_path / "ours") as d:
        assert d.metameta["data_format_version"] == 4
        assert d.metameta["db_id"] == meta["db_id"]
    assert stat.S_IMODE((tmp_path / "ours" / "runs.sqlite").stat().st_mode) == 0o666


def test_create_keeps_an_existing_database(tmp_path):
    with DamnitDB.create(tmp_path, 1234, noncluster_cpus="8") as db:
        db_id = db.db_id
        assert db.setting("noncluster_cpus") == "8"
    with DamnitDB.create(tmp_path, 1234) as db:
        assert db.db_id == db_id and db.setting("noncluster_cpus") == "8"
    with pytest.raises(ValueError, match="belongs to proposal 1234, not 99"):
        DamnitDB.create(tmp_path, 99)
    with pytest.raises(FileNotFoundError, match="runs.sqlite"):
        DamnitDB(tmp_path / "elsewhere")


def test_older_damnit_database_is_migrated_to_v4(tmp_path):
    path = tmp_path / "runs.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE run_info(proposal, run, start_time, added_at);
        CREATE UNIQUE INDEX proposal_run ON run_info (proposal, run);
        CREATE TABLE run_variables(proposal, run, name, version, value, timestamp,
                                   max_diff, provenance, summary_type, summary_method);
        CREATE UNIQUE INDEX variable_version ON run_variables (proposal, run, name, version);
        CREATE VIEW runs AS SELECT * FROM run_info;
        CREATE VIEW max_diffs AS SELECT proposal, run FROM run_info;
        CREATE TABLE metameta(key PRIMARY KEY NOT NULL, value);
        CREATE TABLE variables(name TEXT PRIMARY KEY NOT NULL, type TEXT, title TEXT,
                               description TEXT, attributes TEXT);
        CREATE TABLE time_comments(timestamp, comment);
        INSERT INTO metameta VALUES ('data_format_version', 1), ('proposal', 1234);
        INSERT INTO run_info VALUES (1234, 5, 1.5, 2.5);
    """)
    conn.commit()
    conn.close()
    with DamnitDB(path) as db:
        assert db.metameta["data_format_version"] == 4
        cols = [r[1] for r in db.conn.execute("PRAGMA table_info(run_variables)")]
        assert cols[-1] == "attributes"
        assert [tuple(r) for r in db.conn.execute("SELECT run FROM run_info")] == [(5,)]
        db.sync_variables([{"name": "x", "title": "X", "tags": ["t"]}])
        assert db.get_variable_tags("x") == ["t"]

    legacy = tmp_path / "legacy.sqlite"
    sqlite3.connect(legacy).executescript("CREATE TABLE runs(proposal, runnr);")
    with pytest.raises(RuntimeError, match="legacy v0"):
        DamnitDB(legacy)


def _row(db, name, run=1):
    return db.run_values(1234, run)[name]


def test_value_encodings_match_damnits_reader(tmp_path):
    db = DamnitDB.create(tmp_path, 1234)
    png = PNG_MAGIC + b"rest-of-image"
    trend = np.vstack([np.arange(4.), np.arange(4.) * 2])
    db.set_run_values(1234, 1, {
        "start_time": ReducedValue(1.7e9),
        "i": ReducedValue(3, max_diff=float("nan")),
        "b": ReducedValue(np.bool_(True)),
        "nan": ReducedValue(float("nan")),
        "c": ReducedValue(complex(1, -2)),
        "arr": ReducedValue(np.array([1, 2, 3], dtype=np.int16)),
        "trend": ReducedValue(trend, summary_type="trendline", max_diff=6.0),
        "png": ReducedValue(png),
        "s": ReducedValue("text", summary_method="mean",
                          attributes={"units": "µJ", "bold": True, "background": [1, 2, 3]}),
        "err": ReducedValue.error("Run is not a scan", "Skip"),
    }, provenance="context.py")

    # start_time goes to run_info only
    assert "start_time" not in db.run_values(1234, 1)
    assert db.conn.execute("SELECT start_time FROM run_info").fetchone()[0] == 1.7e9
    assert _row(db, "i")["value"] == 3 and _row(db, "i")["max_diff"] is None
    assert _row(db, "b")["value"] == 1 and type(_row(db, "b")["value"]) is int
    assert _row(db, "nan")["value"] is None
    assert _row(db, "c")["summary_type"] == "complex" and len(_row(db, "c")["value"]) == 16
    assert _row(db, "arr")["summary_type"] == "numpy"
    assert _row(db, "trend")["summary_type"] == "trendline"
    assert _row(db, "png")["value"] == png and _row(db, "png")["summary_type"] is None
    s = _row(db, "s")
    assert s["summary_method"] == "mean" and s["version"] == 1
    assert s["provenance"] == "context.py"
    assert json.loads(s["attributes"]) == {"units": "µJ", "bold": True, "background": [1, 2, 3]}
    err = _row(db, "err")
    assert err["value"] is None and err["summary_method"] is None
    assert json.loads(err["attributes"]) == {"error": "Run is not a scan", "error_cls": "Skip"}
    db.close()

    # What DAMNIT's own API decodes from these rows
    from damnit.api import Damnit

    with DamnitDB(tmp_path) as db:
        db.sync_variables([{"name": n, "title": n} for n in
                           ("i", "b", "c", "arr", "trend", "png", "s", "err")])
    api = Damnit(tmp_path)
    table = api.table()
    assert table.loc[0, "c"] == complex(1, -2)
    assert table.loc[0, "trend"] == "<sparkline>"
    assert table.loc[0, "arr"] == "<ndarray>"
    assert table.loc[0, "png"] == "<thumbnail>"
    assert table.loc[0, "err"] is None
    assert table.loc[0, "s"] == "text"


def test_set_run_values_is_one_transaction(tmp_path):
    db = DamnitDB.create(tmp_path, 1234)
    db.set_run_values(1234, 1, {"a": ReducedValue(1)})
    with pytest.raises(TypeError, match="Variable 'b' of run 1"):
        db.set_run_values(1234, 1, {"a": ReducedValue(2), "b": ReducedValue(object())})
    assert _row(db, "a")["value"] == 1  # the whole write was rolled back
    with pytest.raises(ValueError, match="Invalid variable name 'bad name'"):
        db.set_run_values(1234, 1, {"bad name": ReducedValue(1)})


def test_cleared_names_get_null_rows_and_views_follow_new_names(tmp_path):
    db = DamnitDB.create(tmp_path, 1234)
    db.set_run_values(1234, 1, {"a": ReducedValue(1.5, max_diff=2.0),
                                "g.sub": ReducedValue("x")}, start_time=10.0)
    view_cols = [r[1] for r in db.conn.execute("PRAGMA table_info(runs)")]
    assert view_cols == ["proposal", "run", "start_time", "added_at", "a", "g.sub"]
    assert tuple(db.conn.execute("SELECT a, \"g.sub\" FROM runs").fetchone()) == (1.5, "x")
    assert tuple(db.conn.execute("SELECT a FROM max_diffs").fetchone()) == (2.0,)

    db.set_run_values(1234, 1, {"new": ReducedValue(7)}, cleared=["a"])
    assert tuple(db.conn.execute("SELECT a, new FROM runs").fetchone()) == (None, 7)
    a = _row(db, "a")
    assert a["value"] is None and a["max_diff"] is None and a["attributes"] is None


def test_views_are_checked_by_their_columns_not_by_reading_every_row(tmp_path):
    """A store checks its names against the ``runs`` view's columns (not a scan of every
    run's rows, which grew with the runs stored): a name whose column is missing, as in a
    view made by another writer before it, gets one at the next store; a store of known
    names leaves the views alone."""
    db = DamnitDB.create(tmp_path, 1234)
    db.set_run_values(1234, 1, {"a": ReducedValue(1), "b": ReducedValue(2)})
    db.conn.execute("DROP VIEW runs")
    db.conn.execute("CREATE VIEW runs AS SELECT * FROM run_info")   # a view without a, b
    statements = []
    db.conn.set_trace_callback(statements.append)
    db.set_run_values(1234, 2, {"a": ReducedValue(3)})
    assert tuple(db.conn.execute("SELECT a, b FROM runs WHERE run = 2").fetchone()) == (3, None)
    statements.clear()
    db.set_run_values(1234, 3, {"a": ReducedValue(4), "b": ReducedValue(5)})
    assert not [s for s in statements if "VIEW" in s or "DISTINCT" in s]
    assert tuple(db.conn.execute("SELECT a, b FROM runs WHERE run = 3").fetchone()) == (4, 5)


def test_ensure_run_keeps_added_at_and_updates_start_time(tmp_path):
    db = DamnitDB.create(tmp_path, 1234)
    db.ensure_run(1234, 3, added_at=100.0)
    db.ensure_run(1234, 3, added_at=200.0, start_time=50.0)
    row = db.conn.execute("SELECT start_time, added_at FROM run_info").fetchone()
    assert tuple(row) == (50.0, 100.0)


def test_sync_variables_stores_titles_descriptions_and_tags(tmp_path):
    db = DamnitDB.create(tmp_path, 1234)
    described = [
        {"name": "xgm", "title": "XGM [uJ]", "description": "Mean XGM", "tags": ["XGM", "beam"]},
        {"name": "g.val", "title": "G/Val", "description": None, "tags": None},
        {"name": "tmp", "title": "T", "description": None, "tags": ["x"], "transient": True},
    ]
    assert db.sync_variables(described) == {"xgm", "g.val"}
    assert db.sync_variables(described) == set()  # nothing changed
    rows = {r["name"]: tuple(r)[1:] for r in db.conn.execute("SELECT * FROM variables")}
    assert rows == {"xgm": (None, "XGM [uJ]", "Mean XGM", None),
                    "g.val": (None, "G/Val", None, None)}
    assert db.get_variable_tags("xgm") == ["XGM", "beam"]
    assert "xgm" in [r[1] for r in db.conn.execute("PRAGMA table_info(runs)")]

    described[0]["tags"] = ["beam"]
    assert db.sync_variables(described[:1]) == {"xgm"}
    assert db.get_variable_tags("xgm") == ["beam"]
    # the trigger removed the tag nobody uses any more; removed variables are kept
    assert [r[0] for r in db.conn.execute("SELECT name FROM tags")] == ["beam"]
    assert db.conn.execute("SELECT count(*) FROM variables").fetchone()[0] == 2


def test_init_damnit_dir_layout_and_permissions(tmp_path):
    ctx = tmp_path / "src.py"
    ctx.write_text("# context\n")
    paths = init_damnit_dir(tmp_path / "amore", 1234, context_source=ctx)
    for d in (paths.root, paths.extracted_dir, paths.logs_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o777
    for f in (paths.db_file, paths.context_file):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666
    assert paths.context_file.read_text() == "# context\n"
    assert paths.run_file(1234, 7).name == "p1234_r7.h5"
    assert paths.log_file(1234, 7) == paths.root / "process_logs" / "r7-p1234.out"
    with paths.open_log(1234, 7) as f:
        f.write("hello\n")
    assert stat.S_IMODE(paths.log_file(1234, 7).stat().st_mode) == 0o666
    # the context file is never overwritten
    ctx.write_text("# other\n")
    init_damnit_dir(tmp_path / "amore", 1234, context_source=ctx)
    assert paths.context_file.read_text() == "# context\n"


def test_storage_does_not_import_dagster():
    code = ("import sys, damnit_dagster.storage; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nan_summary_is_null_in_sql(tmp_path):
    with DamnitDB.create(tmp_path, 1234) as db:
        db.set_run_values(1234, 1, {"x": ReducedValue(np.float32("nan"))})
        assert _row(db, "x")["value"] is None


def test_a_database_replaced_at_the_same_path_is_checked_again(tmp_path):
    """A file put in the place of a database this process has opened is a different
    database, checked (migrated, or refused) as any other, however the process may
    remember what it opened: what the spec's "start from scratch" (``rm runs.sqlite``)
    relies on."""
    amore = tmp_path / "amore"
    init_damnit_dir(amore, 1234)
    with DamnitDB(amore) as db:
        db.set_run_values(1234, 1, {"a": ReducedValue(1.0)})
    (amore / "runs.sqlite").unlink()
    sqlite3.connect(amore / "runs.sqlite").executescript("CREATE TABLE runs(proposal, runnr);")
    with pytest.raises(RuntimeError, match="legacy v0"):
        DamnitDB(amore)

    (amore / "runs.sqlite").unlink()
    sqlite3.connect(amore / "runs.sqlite").close()   # empty: made a v4 database on open
    with DamnitDB(amore) as db:
        assert db.metameta["data_format_version"] == 4
        assert db.run_values(1234, 1) == {}

