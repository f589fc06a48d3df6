"""The Dagster UI's pages in Chromium via Playwright, for ``scale.py``: seconds from
opening a page in a new tab until what it is for is drawn."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from _bench_util import BIN, PROPOSAL, REPO, free_port, log, tail, wait_for

from damnit_dagster.plugins.event_compression import expand

CHROMIUM = "/usr/bin/chromium"
# As tests/end_to_end/test_ui_browser.py: no sandbox, no GPU, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


#: The pages measured, in order.
PAGES = ("asset catalog", "an asset's partitions", "lineage of the group",
         "a run's page: first log rows", "a run's page: its whole log")


def pages(run_id: str, last_line: str | None) -> dict[str, tuple[str, str]]:
    """{label: (path, what must be drawn)}: a Playwright selector, or ``text:`` and the
    run's last log line (when that line is unique in the run)."""
    v0 = f'a[href="/assets/p{PROPOSAL}/v0"]'
    found = {
        "asset catalog": ("/assets", f'[class*="VirtualizedAssetRow_rowGrid"]:has({v0}) '
                                     ':text-matches("[0-9,]+ partitions")'),
        "an asset's partitions": (f"/assets/p{PROPOSAL}/v0?view=partitions",
                                  ':text-matches("Materialized \\\\([0-9,]+\\\\)")'),
        # a minimal node (100 of them) is green once its status is loaded
        "lineage of the group": (f"/locations/damnit/asset-groups/p{PROPOSAL}",
                                 '[class*="AssetNode_minimalAssetNodeBox"][style*="green"]'
                                 ':has(:text-is("v0"))'),
        "a run's page: first log rows": (f"/runs/{run_id}",
                                         ':text-is("ASSET_MATERIALIZATION")'),
    }
    if last_line is not None:   # the log view follows the end of what it has loaded
        found["a run's page: its whole log"] = (f"/runs/{run_id}", f"text:{last_line}")
    return found


def last_log_line(home: Path, run_id: str) -> str | None:
    """The start of the message of the Dagster run's last event, as its log shows it;
    None if that event is an asset's (one of many alike, so it proves nothing)."""
    with sqlite3.connect(home / "history" / "runs" / f"{run_id}.db") as conn:
        event, asset_key = conn.execute("SELECT event, asset_key FROM event_logs "
                                        "ORDER BY id DESC LIMIT 1").fetchone()
    return None if asset_key else json.loads(expand(event))["user_message"].splitlines()[0][:50]


def ui_pages(folder: Path, home: Path, env: dict, work: Path, run_id: str,
             cap: float, label: str) -> dict[str, float | None]:
    """Seconds to each of :func:`pages` drawn (None: not within ``cap``)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    (home / ".nux").mkdir(exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")   # no pop-up over the pages
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logfile = work / "webserver.log"
    shots = work.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", str(port)], cwd=REPO, env={**env, "DAMNIT_DIR": str(folder)},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    times = {}
    try:
        wait_for(lambda: location_loaded(url, proc, logfile), 180, "webserver loaded", 0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1440, "height": 960})
            warm = context.new_page()     # the UI's scripts in the browser's cache
            warm.goto(url + "/locations", timeout=cap * 1000)
            warm.close()
            for name, (path, selector) in pages(run_id, last_log_line(home, run_id)).items():
                tab = context.new_page()
                t0 = time.perf_counter()
                try:
                    tab.goto(url + path, wait_until="commit", timeout=cap * 1000)
                    drawn = (tab.get_by_text(selector.removeprefix("text:"))
                             if selector.startswith("text:") else tab.locator(selector))
                    drawn.first.wait_for(
                        state="visible", timeout=max(1.0, cap - (time.perf_counter() - t0))
                        * 1000)
                    times[name] = time.perf_counter() - t0
                except PlaywrightError:
                    times[name] = None
                tab.screenshot(path=str(shots / f"{label}-{name.replace(' ', '_')}.png"))
                tab.close()
                shown = f"{times[name]:.2f} s" if times[name] is not None else f">{cap:g} s"
                log(f"  {name}: {shown}")
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)   # the webserver and its code server
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return times


def location_loaded(url: str, proc: subprocess.Popen, logfile: Path) -> bool:
    """Whether the webserver has loaded the ``damnit`` code location (raises if it failed)."""
    import requests

    if proc.poll() is not None:
        raise RuntimeError(f"dagster-webserver exited ({proc.returncode}):\n{tail(logfile)}")
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
             "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
    try:
        reply = requests.post(f"{url}/graphql", json={"query": query}, timeout=10).json()
    except (requests.RequestException, ValueError):
        return False
    for entry in reply["data"]["workspaceOrError"]["locationEntries"]:
        if entry["name"] == "damnit" and entry["loadStatus"] == "LOADED":
            outcome = entry["locationOrLoadError"]
            if outcome["__typename"] != "RepositoryLocation":
                raise RuntimeError(f"code location failed: {outcome.get('message')}")
            return True
    return False
