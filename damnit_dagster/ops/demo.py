"""``damnit-dagster demo``: a beamline's evening in a few minutes.

1. A mock proposal (EXtra-data's mock writers) and its DAMNIT folder, whose context file
   holds the spec's example variables plus a richer set (figures, Datasets, a proc-data
   image, a Skip, a deliberate error...).
2. The backend starts under Supervisor, as in production.
3. Runs "arrive": each run's raw data is written and a migration event sent, then its
   calibrated data and a calibration event, as the facility's services would.
4. A live count shows results landing in ``runs.sqlite``; the run table is printed and
   the Dagster UI address given.

Everything lives in one work folder (``./demo`` by default) and listens on 127.0.0.1 only.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

from damnit_dagster.events.inbox import EventInbox
from damnit_dagster.ops import supervisor
from damnit_dagster.ops.mockdata import make_run, proposal_dir
from damnit_dagster.plugins.home import inbox_path
from damnit_dagster.storage.folder import init_damnit_dir

PROPOSAL = 1234
CONTEXT = Path(__file__).parent.parent / "templates" / "context_25vars.py"


def stored_names(db_file: Path, proposal: int) -> dict[int, set[str]]:
    """Run number -> names with a row (a value or an error) in ``runs.sqlite``."""
    with sqlite3.connect(db_file, timeout=30) as conn:
        rows = conn.execute("SELECT run, name FROM run_variables WHERE proposal = ?",
                            (proposal,)).fetchall()
    names: dict[int, set[str]] = {}
    for run, name in rows:
        names.setdefault(run, set()).add(name)
    return names


def run_table(db_file: Path) -> str:
    """The run table as the GUI would show it: titles as columns, one row per run."""
    import pandas as pd

    with sqlite3.connect(db_file, timeout=30) as conn:
        titles = dict(conn.execute("SELECT name, title FROM variables"))
        df = pd.read_sql_query("SELECT * FROM runs ORDER BY run", conn)
    df = df.drop(columns=["proposal", "added_at"], errors="ignore")
    df["start_time"] = pd.to_datetime(df["start_time"], unit="s", utc=True).dt.strftime("%H:%M")
    df = df.map(lambda v: "<image>" if isinstance(v, bytes) else v)
    df = df.rename(columns={"run": "Run", "start_time": "Time", **titles})
    with pd.option_context("display.width", 250, "display.max_columns", 14,
                           "display.max_colwidth", 16, "display.float_format", "{:.4g}".format):
        return df.to_string(index=False)


def run_demo(workdir: Path, *, runs: int = 6, port: int, keep_running: bool = False,
             timeout: float = 900, echo=print) -> bool:
    """Run the demo in ``workdir``; True when every run got its results in time."""
    workdir = Path(workdir).absolute()
    data_root = workdir / "data"
    os.environ.update(EXTRA_DATA_DATA_ROOT=str(data_root), XFEL_DATA_ROOT=str(data_root),
                      DAGSTER_HOME=str(workdir / "dagster_home"))
    prop_dir = proposal_dir(data_root, PROPOSAL)
    damnit_dir = prop_dir / "usr" / "Shared" / "amore"
    # A fresh demo each time: the previous backend stopped, its data removed.
    if supervisor.config_path(damnit_dir).exists():
        supervisor.stop(damnit_dir)
    if workdir.exists():
        import shutil
        shutil.rmtree(workdir)
    paths = init_damnit_dir(damnit_dir, PROPOSAL, context_source=CONTEXT)
    echo(f"DAMNIT folder: {paths.root}")

    command = [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(paths.root),
               "listen", "--port", str(port)]
    env = {k: os.environ[k] for k in ("EXTRA_DATA_DATA_ROOT", "XFEL_DATA_ROOT", "DAGSTER_HOME")}
    echo("Starting the backend under Supervisor ...")
    supervisor.start(paths.root, command, env=env, timeout=120)
    echo(supervisor.status(paths.root))
    url = f"http://127.0.0.1:{port}"
    echo(f"Dagster UI: {url}  (asset catalog: {url}/assets)")
    _wait_for_ui(url)

    inbox = EventInbox(inbox_path())
    for run in range(1, runs + 1):
        make_run(prop_dir, PROPOSAL, run, with_proc=False, scan=run % 3 == 0)
        inbox.add("migration", PROPOSAL, run, source="demo")
        echo(f"r{run}: raw data migrated, event sent")
        if run != runs:   # the last run never gets calibrated: its proc variables are missing
            make_run(prop_dir, PROPOSAL, run, with_proc=True, scan=run % 3 == 0)
            inbox.add("calibration", PROPOSAL, run, source="demo")
            echo(f"r{run}: calibration finished, event sent")

    from damnit_dagster.defs.context_source import load_context
    saved = [v for v in load_context(paths.root).variables if not v.get("transient")]
    raw = {v["name"] for v in saved if v["data"] == "raw"}
    expected = {r: raw if r == runs else {v["name"] for v in saved} for r in range(1, runs + 1)}
    ok = _wait_for_results(paths.db_file, expected, timeout, echo)
    echo("")
    echo(run_table(paths.db_file))
    echo("")
    echo(f"Full data: {paths.extracted_dir}; logs: {paths.logs_dir}")
    if keep_running:
        echo(f"The backend keeps running: {url}\n"
             f"Stop it with: supervisorctl -c {supervisor.config_path(paths.root)} shutdown")
    else:
        supervisor.stop(paths.root)
        echo("Backend stopped (run with --keep-running to browse the Dagster UI).")
    return ok


def _wait_for_ui(url: str, timeout: float = 180) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"the Dagster UI did not come up at {url}")


def _wait_for_results(db_file: Path, expected: dict[int, set[str]], timeout: float,
                      echo) -> bool:
    """Show a live count until every run has a row for each expected variable."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        stored = stored_names(db_file, PROPOSAL)
        done = sum(1 for run, names in expected.items() if names <= stored.get(run, set()))
        if done != last:
            echo(f"runs with all results: {done}/{len(expected)}")
            last = done
        if done == len(expected):
            return True
        time.sleep(1)
    echo(f"timed out after {timeout:.0f} s")
    return False
