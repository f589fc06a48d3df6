"""``reprocess --stale``: per run, only stale variables and their dependents are computed;
their other inputs are read from the run's file."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import xarray as xr

from damnit_dagster.defs.context_source import load_context, variable_syncer
from damnit_dagster.reprocess.direct import reprocess_direct
from damnit_dagster.reprocess.stale import StaleRefused, find_stale, reprocess_stale
from support.paths import CONTEXTS, REPO
from support.processes import process_gone

PROPOSAL = 4321
RUNS = [1, 2, 3]
SAVED = ["arr", "axes", "base", "fig", "label", "leaf", "proc_sum", "scalar"]


@pytest.fixture
def stale_setup(tmp_path, damnit_folder, mock_proposal, monkeypatch):
    """Runs 1-3 of proposal 4321 processed once with ``contexts/stale_graph.py``; the
    folder, with an empty ``calls.log``."""
    from damnit_dagster.ops.mockdata import make_proposal

    if not (mock_proposal.root / "MID" / "202501" / f"p{PROPOSAL:06d}").exists():
        make_proposal(mock_proposal.root, PROPOSAL, RUNS, ntrains=10, runs_without_proc=())
    folder = damnit_folder((CONTEXTS / "stale_graph.py").read_text(), proposal=PROPOSAL).root
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    load_context(folder, on_new_version=variable_syncer(folder))   # damnit.api's titles
    with dg.DagsterInstance.get() as instance:
        reprocess_direct(folder, "1-3", instance=instance)
    (folder / "calls.log").write_text("")
    return folder


def edit(folder: Path, old: str, new: str) -> None:
    path = folder / "context.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def call_log(folder: Path) -> list[tuple[str, int]]:
    """(function, process) of the calls since the last look (and forget them)."""
    log = folder / "calls.log"
    entries = [line.split() for line in log.read_text().splitlines()]
    log.write_text("")
    return [(name, int(pid)) for name, pid in entries]


def calls(folder: Path) -> list[str]:
    """The functions called since the last look (and forget them)."""
    return sorted(name for name, _ in call_log(folder))



def timestamps(folder: Path) -> dict:
    with sqlite3.connect(folder / "runs.sqlite") as db:
        return {(r, n): t for r, n, t in db.execute(
            "SELECT run, name, timestamp FROM run_variables WHERE name != 'start_time'")}


def values(folder: Path) -> dict:
    """Every saved variable of every run, as ``damnit.api`` reads it."""
    from damnit.api import Damnit

    db = Damnit(folder)
    return {(run, name): db[run, name].read() for run in RUNS for name in SAVED}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], xr.DataArray):
            xr.testing.assert_identical(a[key], b[key])
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))


def stale(folder, runs="all", **kwargs):
    messages = []
    with dg.DagsterInstance.get() as instance:
        results = reprocess_stale(folder, runs, instance=instance, say=messages.append,
                                  **kwargs)
    return results, messages


def test_editing_a_leaf_recomputes_it_alone_and_equals_a_full_reprocess(stale_setup):
    folder = stale_setup
    before = timestamps(folder)
    edit(folder, 'return f"{lab}: {s + t.sum()}"', 'return f"{lab} = {s + t.sum()}"')

    results, messages = stale(folder)

    assert sorted(results) == RUNS and all(r.ok == ["leaf"] for r in results.values())
    assert messages == ["3 runs (r1..r3): recomputing leaf (code changed)"]
    # only leaf and the transient it needs were called; inputs came from the run files
    called = call_log(folder)
    assert sorted(name for name, _ in called) == ["leaf"] * 3 + ["tmp"] * 3
    # by warm children evaluating runs in turn, all ended with the pass
    assert all(process_gone(pid) for _, pid in called)
    assert "in a warm child evaluating runs in turn" in (
        folder / "process_logs" / f"r1-p{PROPOSAL}.out").read_text()
    after = timestamps(folder)
    assert {k for k in after if after[k] != before[k]} == {(r, "leaf") for r in RUNS}
    stale_values = values(folder)
    assert stale_values[1, "leaf"] == "run 1 = 18.0"

    with dg.DagsterInstance.get() as instance:
        reprocess_direct(folder, "all", instance=instance)
    assert_same(stale_values, values(folder))


def test_each_run_file_is_replaced_once_per_pass(stale_setup, monkeypatch):
    folder = stale_setup
    renamed = []
    replace = os.replace

    def counting_replace(src, dst, *args, **kwargs):
        renamed.append(Path(dst).name)
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", counting_replace)
    edit(folder, "return xr.DataArray(b * 2,", "return xr.DataArray(b * 3,")
    stale(folder)
    run_files = sorted(n for n in renamed if n.startswith(f"p{PROPOSAL}_r"))
    assert run_files == [f"p{PROPOSAL}_r{r}.h5" for r in RUNS]   # 3 variables, one write


def test_load_asset_value_reads_what_damnit_api_reads(stale_setup):
    from damnit_dagster.defs.definitions import build_definitions

    folder = stale_setup
    defs = build_definitions(folder, with_sensor=False)
    expected = values(folder)
    with dg.DagsterInstance.get() as instance:
        for name in SAVED:
            value = defs.load_asset_value(dg.AssetKey([f"p{PROPOSAL}", name]),
                                          partition_key="2", instance=instance)
            assert_same({name: value}, {name: expected[2, name]})


def test_the_dagster_ui_marks_stale_exactly_what_stale_recomputes(stale_setup):
    from damnit_dagster.defs.definitions import build_definitions
    from damnit_dagster.plugins.dagster_private import StaleStatus, get_stale_status_resolver

    folder = stale_setup
    edit(folder, "return xr.DataArray(b * 2,", "return xr.DataArray(b * 3,")
    edit(folder, '@Variable(title="Label")', '@Variable(title="Label text", tags=["new"])')
    defs = build_definitions(folder, with_sensor=False)
    _, found = find_stale(folder, "all")
    with dg.DagsterInstance.get() as instance:
        resolver = get_stale_status_resolver(instance,
                                             list(defs.resolve_asset_graph().assets_defs))
        for item in found:
            ui = {name for name in SAVED if resolver.get_status(
                dg.AssetKey([f"p{PROPOSAL}", name]), str(item.run)) == StaleStatus.STALE}
            assert ui == set(item.stale) == {"arr", "scalar", "leaf"}, item.run


def test_a_calibration_event_does_not_call_raw_functions_again(stale_setup):
    from damnit_dagster.defs.definitions import build_definitions

    folder = stale_setup
    before = timestamps(folder)
    defs = build_definitions(folder, with_sensor=False)
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("proc").execute_in_process(
            instance=instance, partition_key="2", tags={"damnit/trigger": "calibration"})
    assert result.success
    assert calls(folder) == ["proc_sum"]                      # base is read, not called
    after = timestamps(folder)
    assert {k for k in after if after[k] != before[k]} == {(2, "proc_sum")}
    assert values(folder)[2, "proc_sum"] == 14.0


def test_an_upstream_edit_recomputes_its_dependents_and_nothing_else(stale_setup):
    folder = stale_setup
    edit(folder, "return xr.DataArray(b * 2,", "return xr.DataArray(b * 3,")
    _, found = find_stale(folder, "2")
    assert found[0].stale == {"arr": "code changed", "scalar": "code changed",
                              "leaf": "code changed"}
    results, _ = stale(folder, "2")
    assert sorted(results[2].ok) == ["arr", "leaf", "scalar"]
    assert calls(folder) == ["arr", "leaf", "scalar", "tmp"]
    full = values(folder)
    with dg.DagsterInstance.get() as instance:
        reprocess_direct(folder, "2", instance=instance)
    assert_same(full, values(folder))


def test_an_input_stored_as_a_figure_is_computed_again_not_stored(stale_setup):
    folder = stale_setup
    before = timestamps(folder)
    edit(folder, "return len(f.axes)", "return len(f.axes) + 1")
    results, _ = stale(folder, "1")
    assert results[1].ok == ["axes"]
    assert calls(folder) == ["axes", "fig"]
    after = timestamps(folder)
    assert after[1, "fig"] == before[1, "fig"] and after[1, "axes"] != before[1, "axes"]
    assert values(folder)[1, "axes"] == 2


def test_nothing_stale_means_nothing_recomputed(stale_setup):
    folder = stale_setup
    before = timestamps(folder)
    # a title, a description and a comment are not what computes the value
    edit(folder, '@Variable(title="Leaf")\ndef leaf(run, s: "var#scalar", lab: "var#label", '
                 't: "var#tmp"):\n',
         '@Variable(title="Leaf text", description="joined")\n'
         'def leaf(run, s: "var#scalar", lab: "var#label", t: "var#tmp"):  # a comment\n')
    results, messages = stale(folder)
    assert results == {} and messages == ["nothing is stale: nothing recomputed"]
    assert calls(folder) == [] and timestamps(folder) == before


def test_a_broken_context_is_refused_and_nothing_changes(stale_setup):
    folder = stale_setup
    before = timestamps(folder)
    edit(folder, "def leaf(", "def leaf(((")
    with pytest.raises(StaleRefused, match="context.py does not load"):
        stale(folder)
    assert calls(folder) == [] and timestamps(folder) == before


def test_renamed_variable_is_reported_and_its_old_values_kept(stale_setup):
    folder = stale_setup
    edit(folder, "def label(run", "def caption(run")
    edit(folder, '"var#label"', '"var#caption"')
    _, messages = stale(folder, "1")
    assert messages[0].startswith("r1: recomputing caption (never computed), leaf (code ")
    assert messages[-1] == "kept, no longer in the context file: label"
    from damnit.api import Damnit
    assert Damnit(folder)[1, "label"].read() == "run 1"


def test_adding_a_dependency_makes_the_variable_stale(stale_setup):
    folder = stale_setup
    edit(folder, 'def axes(run, f: "var#fig"):\n    called("axes")\n    return len(f.axes)',
         'def axes(run, f: "var#fig", s: "var#scalar"):\n    called("axes")\n'
         '    return len(f.axes) + s')
    _, found = find_stale(folder, "1")
    assert found[0].stale == {"axes": "code changed"}


def test_var_narrows_what_is_considered(stale_setup):
    folder = stale_setup
    edit(folder, "return xr.DataArray(b * 2,", "return xr.DataArray(b * 3,")
    results, _ = stale(folder, "1", variables=("scalar",))
    assert sorted(results[1].ok) == ["arr", "scalar"]        # leaf is left stale
    assert calls(folder) == ["arr", "scalar"]
    _, found = find_stale(folder, "1")
    assert found[0].stale == {"leaf": "code changed"}       # its version folds in arr's


def test_command_says_what_is_stale(stale_setup):
    folder = stale_setup
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(folder),
         "reprocess", "--stale", "all"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "nothing is stale: nothing recomputed" in proc.stdout


def test_a_variable_computed_from_stored_inputs_alone_needs_no_run_data(stale_setup,
                                                                        mock_proposal):
    """Old runs' raw data may be gone (archived to tape): a stale variable that never
    reads its run is still recomputed from the values its run file keeps, with the run's
    start time unchanged; one that reads the run says it cannot open it."""
    folder = stale_setup
    with sqlite3.connect(folder / "runs.sqlite") as db:
        start = db.execute("SELECT start_time FROM runs WHERE run = 1").fetchone()[0]
    raw = mock_proposal.root / "MID" / "202501" / f"p{PROPOSAL:06d}" / "raw" / "r0001"
    raw.rename(raw.with_name("r0001-archived"))
    try:
        edit(folder, 'return f"{lab}: {s + t.sum()}"', 'return f"{lab} = {s + t.sum()}"')
        results, _ = stale(folder, "1")
        assert results[1].ok == ["leaf"] and calls(folder) == ["leaf", "tmp"]
        assert values(folder)[1, "leaf"] == "run 1 = 18.0"
        with sqlite3.connect(folder / "runs.sqlite") as db:
            assert db.execute("SELECT start_time FROM runs WHERE run = 1").fetchone()[0] \
                == start

        edit(folder, "    called(\"label\")\n    return f\"run {n}\"",
             "    called(\"label\")\n    return f\"run {n} of {len(run.train_ids)} trains\"")
        results, _ = stale(folder, "1")
        assert not results[1].processed and "cannot open run 1" in results[1].run_error
    finally:
        raw.with_name("r0001-archived").rename(raw)
