"""Context file changes: a broken edit keeps the last good definitions; changes are seen."""
import textwrap

import dagster as dg
import pytest

from damnit_dagster.defs.context_source import evaluation_path, load_context
from damnit_dagster.defs.definitions import build_definitions
from damnit_dagster.ops.reload import ReloadError, check_once, reload_location

GOOD = '''
from damnit_ctx import Variable

@Variable(title="Run")
def run_no(run, n: "meta#run_number"):
    return n

@Variable(title="Doubled")
def doubled(run, n: "var#run_no"):
    return 2 * n
'''

BROKEN = GOOD + '''
@Variable(title="Oops")
def oops(run:
    return 1
'''

FIXED = GOOD + '''
@Variable(title="Tripled")
def tripled(run, n: "var#run_no"):
    return 3 * n
'''


@pytest.fixture
def folder(damnit_folder):
    return damnit_folder(GOOD).root


def keys(defs):
    return sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())


def context_asset(defs):
    return defs.resolve_asset_graph().get(dg.AssetKey(["p1234", "context.py"]))


def test_a_broken_edit_keeps_the_last_good_assets_and_shows_the_error(folder, tmp_path, caplog):
    state = tmp_path / "state"
    good_keys = keys(build_definitions(folder, state_dir=state, with_sensor=False))
    assert "p1234/doubled" in good_keys
    (folder / "context.py").write_text(textwrap.dedent(BROKEN))
    defs = build_definitions(folder, state_dir=state, with_sensor=False)
    assert keys(defs) == good_keys
    node = context_asset(defs)
    assert node.tags["status"] == "error"
    assert "last good version is still served" in node.description
    assert "context.py:13: SyntaxError" in node.metadata["error"].value
    assert "has errors" in caplog.text
    # steps evaluate the last good copy, not the broken file
    snapshot = load_context(folder, state_dir=state)
    assert evaluation_path(snapshot) != folder / "context.py"
    assert "oops" not in evaluation_path(snapshot).read_text()
    # fixing the file serves the new variable
    (folder / "context.py").write_text(textwrap.dedent(FIXED))
    defs = build_definitions(folder, state_dir=state, with_sensor=False)
    assert "p1234/tripled" in keys(defs)
    assert context_asset(defs).tags["status"] == "ok"


def test_a_broken_first_version_gives_an_empty_location_with_the_error(folder, tmp_path):
    (folder / "context.py").write_text(textwrap.dedent(BROKEN))
    defs = build_definitions(folder, state_dir=tmp_path / "state", with_sensor=False)
    assert keys(defs) == ["p1234/context.py"]
    assert "no earlier version loaded" in context_asset(defs).description


def test_the_materialised_run_uses_the_served_version(folder, tmp_path, mock_proposal):
    state = tmp_path / "state"
    defs = build_definitions(folder, state_dir=state, with_sensor=False)
    (folder / "context.py").write_text(textwrap.dedent(GOOD).replace("2 * n", "20 * n"))
    with dg.instance_for_test() as instance:   # edited, not reloaded: still the old code
        instance.add_dynamic_partitions("p1234_runs", ["2"])
        result = defs.resolve_job_def("all").execute_in_process(instance=instance,
                                                                partition_key="2")
    mats = [e.step_materialization_data.materialization for e in result.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert {m.asset_key.path[-1]: m.metadata["summary"].value for m in mats}["doubled"] == 4


def test_check_once_reports_each_change_once(folder, tmp_path):
    seen = []
    state = tmp_path / "state"
    sha = check_once(folder, None, seen.append, state_dir=state)
    assert check_once(folder, sha, seen.append, state_dir=state) == sha
    (folder / "context.py").write_text(textwrap.dedent(BROKEN))
    sha2 = check_once(folder, sha, seen.append, state_dir=state)
    assert sha2 != sha
    assert [s.error is None for s in seen] == [True, False]


def test_reload_names_an_unreachable_webserver():
    import requests

    with pytest.raises((requests.RequestException, ReloadError)):
        reload_location("http://127.0.0.1:9", "damnit", timeout=5)
