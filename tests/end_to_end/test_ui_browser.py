"""What a user sees in the Dagster UI, checked in a real browser.

Two runs of a mock proposal are materialised on a real instance; then the real
``dagster-webserver`` serves the project's ``workspace.yaml`` for that folder and
instance, and Debian's Chromium (driven by Playwright) opens the asset catalog, the
lineage graph, a run partition's materialization, an asset's overview and the
failed/skipped variables' check results. Screenshots go to ``test-artifacts/ui/``. Needs
``scripts/install_browser.sh``.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import requests

from support.paths import REPO

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:      # reported by require_browser()
    expect = sync_playwright = None

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
# As root, in a sandbox with no network: no sandbox, no GPU, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
STARTUP_TIMEOUT = 90

CONTEXT = '''
import numpy as np
import xarray as xr
from damnit_ctx import Variable, Skip
from extra.components import XGM, Scantool

@Variable(title="XGM intensity", summary="mean", units="uJ")
def xgm_intensity(run):
    return XGM(run).pulse_energy().mean("pulseIndex")

@Variable(title="XGM spread")
def xgm_std(run, xgm: "var#xgm_intensity"):
    return float(xgm.std())

@Variable(transient=True)
def xgm_trains(run, xgm: "var#xgm_intensity"):
    return xgm.sizes["trainId"]

@Variable(title="Trains with XGM")
def n_trains(run, n: "var#xgm_trains"):
    return int(n)

@Variable(title="Detector image")
def image(run, n: "meta#run_number"):
    return xr.DataArray(np.outer(np.arange(48.0), np.arange(32.0)) * n, dims=("y", "x"))

@Variable(title="Image mean")
def image_mean(run, img: "var#image"):
    return float(img.mean())

@Variable(title="Scan motor")
def scan_motor(run):
    if not Scantool(run).active:
        raise Skip("Run is not a scan")
    return Scantool(run).motors[0]

@Variable(title="Broken")
def broken(run):
    raise ValueError("calibration constant missing for this run")
'''
SAVED = {"xgm_intensity", "xgm_std", "n_trains", "image", "image_mean", "scan_motor", "broken"}
# The annotated dependencies as lineage; n_trains reaches xgm_intensity through a transient.
EDGES = {("xgm_intensity", "xgm_std"), ("xgm_intensity", "n_trains"), ("image", "image_mean")}
RUNS = (1, 3)   # run 1 is no scan (scan_motor skipped), run 3 is one
PARTITIONS = 4  # runs 1-4 of the mock proposal
# Runs whose partition each variable materialised: broken never, scan_motor for run 3 only.
MATERIALISED = {name: len(RUNS) for name in SAVED} | {"scan_motor": 1, "broken": 0}

# Each drawn edge of the lineage graph as (source, target) asset names: edges are SVG paths
# whose ends touch the node cards (foreignObjects) they connect.
EDGES_JS = """() => {
  const nodes = Array.from(document.querySelectorAll('foreignObject')).map(fo => {
    const name = fo.querySelector('[class*="AssetNode_assetName"] [data-tooltip]');
    return name && {name: name.dataset.tooltip, x: +fo.getAttribute('x'),
                    y: +fo.getAttribute('y'), w: +fo.getAttribute('width'),
                    h: +fo.getAttribute('height')};
  }).filter(Boolean);
  const touching = (x, y, side) => nodes.find(n => y >= n.y && y <= n.y + n.h &&
      Math.abs((side === 'out' ? n.x + n.w : n.x) - x) < 16);
  return Array.from(document.querySelectorAll('path[marker-end]')).map(p => {
    const xy = p.getAttribute('d').match(/-?[0-9.]+/g).map(Number);
    const src = touching(xy[0], xy[1], 'out');
    const dst = touching(xy[xy.length - 2], xy[xy.length - 1], 'in');
    return [src ? src.name : null, dst ? dst.name : null];
  });
}"""


def require_browser():
    """Skip (fail under CI) when Chromium or Playwright is not installed."""
    missing = [what for what, ok in (
        (CHROMIUM, os.access(CHROMIUM, os.X_OK)),
        ("playwright", sync_playwright is not None)) if not ok]
    if missing:
        msg = f"{', '.join(missing)} not installed: run scripts/install_browser.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def materialise(damnit_dir, home):
    """Run the ``all`` job for RUNS on the instance in ``home``, as the daemon would."""
    import dagster as dg

    from damnit_dagster.defs.context_source import state_dir_for
    from damnit_dagster.defs.definitions import build_definitions

    defs = build_definitions(damnit_dir, state_dir=state_dir_for(damnit_dir, home),
                             with_sensor=False)
    job = defs.resolve_job_def("all")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("p1234_runs", ["1", "2", "3", "4"])
        for run in RUNS:
            result = job.execute_in_process(
                instance=instance, partition_key=str(run), raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            assert result.success, f"materialising run {run} failed"


def wait_until_loaded(url, proc, log):
    """Wait until the webserver answers and has loaded the ``damnit`` code location."""
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
             "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            reply = requests.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
        except (requests.RequestException, ValueError):
            time.sleep(0.5)
            continue
        entries = reply["data"]["workspaceOrError"]["locationEntries"]
        loaded = [e for e in entries if e["name"] == "damnit" and e["loadStatus"] == "LOADED"]
        if loaded:
            outcome = loaded[0]["locationOrLoadError"]
            assert outcome["__typename"] == "RepositoryLocation", outcome.get("message")
            return
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver not ready in {STARTUP_TIMEOUT} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory, mock_proposal):
    """A webserver serving a DAMNIT folder with RUNS materialised; yields (url, folder)."""
    require_browser()
    from support.folders import make_damnit_folder

    tmp = tmp_path_factory.mktemp("ui")
    damnit_dir = make_damnit_folder(tmp / "amore", CONTEXT).root
    home = tmp / "dagster_home"
    (home / ".nux").mkdir(parents=True)
    shutil.copyfile(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    # The "Join the Dagster community" pop-up would cover the pages: mark it seen.
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    materialise(damnit_dir, home)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "webserver.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAMNIT_DIR": str(damnit_dir),
           "MPLBACKEND": "Agg"}
    webserver = Path(sys.executable).with_name("dagster-webserver")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_loaded(url, proc, log)
        yield url, damnit_dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)   # the webserver and its code server
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser(ui):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, ui):
    """A fresh tab; ``page.open(path)`` loads a UI path."""
    tab = browser.new_page(viewport={"width": 1440, "height": 960})
    tab.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)
    tab.open = lambda path: tab.goto(ui[0] + path)
    yield tab
    tab.close()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def metadata_value(page, label, column=1):
    """The text of a metadata table's value cell (``column``) for ``label`` (waits for it)."""
    row = page.locator("tr").filter(has=page.get_by_text(label, exact=True))
    cell = row.first.locator("td").nth(column)
    cell.wait_for()
    return cell.inner_text().strip()


def field_value(page, label):
    """The value under a bold field label such as ``Partition``."""
    return page.get_by_text(label, exact=True).locator("xpath=..").inner_text() \
        .removeprefix(label).strip()


def asset_link(page, name):
    """The catalog's link to variable ``name`` (exactly, not a longer name)."""
    return page.locator(f'a[href="/assets/p1234/{name}"]')


def test_catalog_lists_every_saved_variable_as_an_asset(page):
    page.open("/assets")
    rows = page.locator('[class*="VirtualizedAssetRow_rowGrid"]')
    for name in SAVED:
        row = rows.filter(has=asset_link(page, name))
        expect(row).to_contain_text(f"{PARTITIONS} partitions")    # statuses loaded
    shot(page, "catalog")
    listed = {m.group(1) for text in page.get_by_role("link").all_inner_texts()
              if (m := re.match(r"p1234 / (\S+)", text))}
    assert listed == SAVED | {"context.py"}      # the transient xgm_trains is no asset
    for name in SAVED:
        row = rows.filter(has=asset_link(page, name))
        counts = row.locator('[role="img"][aria-label^="partition_"]').evaluate_all(
            "icons => icons.map(i => [i.getAttribute('aria-label'), i.parentElement.innerText])")
        first = {}
        for label, count in counts:          # materialised, missing, failed (in this order)
            first.setdefault(label, PARTITIONS if count == "All" else int(count))
        assert first == {"partition_success": MATERIALISED[name],
                         "partition_missing": PARTITIONS - MATERIALISED[name],
                         "partition_failure": 0}, name
    # the variable's title is its description
    expect(rows.filter(has=asset_link(page, "xgm_std"))).to_contain_text("XGM spread")


def test_lineage_graph_draws_the_annotated_dependencies(page):
    page.set_viewport_size({"width": 1440, "height": 1500})   # the whole graph in view
    page.open("/asset-groups")
    for name in SAVED:
        card = page.locator("foreignObject").filter(has=page.locator(f'[data-tooltip="{name}"]'))
        filled = round(100 * MATERIALISED[name] / PARTITIONS)
        expect(card).to_contain_text(f"{filled}% filled")
    shot(page, "lineage")
    names = set(page.locator('foreignObject [class*="AssetNode_assetName"] [data-tooltip]')
                .evaluate_all("els => els.map(e => e.dataset.tooltip)"))
    assert names == SAVED | {"context.py"}
    assert {tuple(edge) for edge in page.evaluate(EDGES_JS)} == EDGES
    # the check row marks the failed variable red and the skipped one yellow
    icons = {name: set(page.locator("foreignObject").filter(
                 has=page.locator(f'[data-tooltip="{name}"]')).locator('[role="img"]')
                 .evaluate_all("els => els.map(e => e.getAttribute('aria-label'))"))
             for name in ("broken", "scan_motor", "xgm_std")}
    assert "close" in icons["broken"] and "warning_outline" in icons["scan_motor"], icons
    assert "done" in icons["xgm_std"] and not {"close", "warning_outline"} & icons["xgm_std"]


def test_partition_shows_summary_value_and_where_the_image_preview_is(page, ui):
    from damnit.api import Damnit

    page.open("/assets/p1234/xgm_intensity?view=partitions&partition=3")
    summary = float(metadata_value(page, "summary"))
    shot(page, "partition_summary")
    assert summary == pytest.approx(Damnit(ui[1])[3, "xgm_intensity"].summary())
    run_file = metadata_value(page, "hdf5")
    assert run_file.endswith("extracted_data/p1234_r3.h5")
    expect(page.get_by_text(f"Materialized ({len(RUNS)})")).to_be_visible()   # of 4 runs

    # title and units are the asset's, shown with its latest value's metadata
    page.open("/assets/p1234/xgm_intensity?view=overview")
    assert metadata_value(page, "units", column=2) == "uJ"    # after a timestamp column
    assert metadata_value(page, "title", column=2) == "XGM intensity"
    shot(page, "asset_overview")

    page.open("/assets/p1234/image?view=partitions&partition=3")
    shot(page, "partition_preview")
    dataset = metadata_value(page, "preview")     # the thumbnail stays in the run's file
    with h5py.File(Path(run_file).with_name("p1234_r3.h5"), "r") as f:
        assert f[dataset][()].tobytes().startswith(b"\x89PNG\r\n\x1a\n")


def check_result(page, variable):
    """Open the variable's evaluation check; returns the 'Failed' tag locator."""
    page.open(f"/assets/p1234/{variable}?view=checks")
    page.get_by_text("Latest execution").wait_for()
    return page.locator(".BaseTag", has=page.locator('[data-tooltip="Failed"]'))


def test_failed_variable_shows_its_error_and_class(page):
    tag = check_result(page, "broken")
    error = page.get_by_text("failed: ValueError: calibration constant missing for this run")
    error.wait_for()
    shot(page, "failed_variable")
    assert metadata_value(page, "error") == "calibration constant missing for this run"
    assert metadata_value(page, "error_cls") == "ValueError"
    assert tag.get_by_role("img").get_attribute("aria-label") == "cancel"    # red
    assert field_value(page, "Partition") == "3"                   # the newest failure


def test_skipped_variable_is_a_warning_not_a_failure(page):
    tag = check_result(page, "scan_motor")
    page.get_by_text("skipped: Skip: Run is not a scan").wait_for()
    shot(page, "skipped_variable")
    assert metadata_value(page, "error_cls") == "Skip"
    assert field_value(page, "Partition") == "1"                   # run 1 is no scan
    assert tag.get_by_role("img").get_attribute("aria-label") == "warning_outline"  # yellow
