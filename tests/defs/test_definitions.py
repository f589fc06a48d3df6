"""Definitions built from the spec's example context files: keys, deps, tags, jobs."""

import dagster as dg
import pytest

from damnit_dagster.defs.definitions import build_definitions
from support.folders import make_damnit_folder
from support.spec_examples import FIRST_EXAMPLE, GROUP_XGM, NESTED_AS_MEANT

SPEC_BASIC = FIRST_EXAMPLE

SPEC_DEPS = '''
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run, run_no: "meta#run_number"):
    return run_no

@Variable(title="bar")
def bar(run, value: "var#foo"):
    return value * 2

@Variable(title="baz")
def baz(run, value: "var#foo"=42):
    return value

@Variable(title="Detector preview", data="proc", tags=["detector", "agipd raw"])
def detector_preview(run):
    return 1

@Variable(title="After preview")
def after_preview(run, x: "var#detector_preview"):
    return x

@Variable(title="Positions", transient=True)
def positions(run, f: "var#foo"):
    return [f]

@Variable(title="Range")
def pos_range(run, p: "var#positions"):
    return len(p)

@Variable(title="Heavy", cluster=True)
def heavy(run, b: "var#bar"):
    return b
'''

SPEC_GROUPS = GROUP_XGM + NESTED_AS_MEANT


def make_defs(tmp_path, code):
    folder = make_damnit_folder(tmp_path / "amore", code).root
    return build_definitions(folder, state_dir=tmp_path / "state", with_sensor=False)


def graph(defs):
    ag = defs.resolve_asset_graph()
    return {k.to_user_string(): ag.get(k) for k in ag.get_all_asset_keys()}


def test_spec_example_variables_become_partitioned_assets(tmp_path):
    nodes = graph(make_defs(tmp_path, SPEC_BASIC))
    assert set(nodes) == {"p1234/xgm_intensity", "p1234/pulses", "p1234/context.py"}
    xgm = nodes["p1234/xgm_intensity"]
    assert xgm.description == "Mean XGM intensity per-train."
    assert xgm.tags["data"] == "raw" and xgm.tags["cluster"] == "false"
    assert xgm.partitions_def.name == "p1234_runs"
    assert xgm.metadata["title"] == "XGM intensity [uJ]"
    assert xgm.metadata["summary"] == "mean"
    assert xgm.code_version and xgm.code_version != nodes["p1234/pulses"].code_version


def test_deps_follow_annotations_through_transients_and_tags(tmp_path):
    defs = make_defs(tmp_path, SPEC_DEPS)
    nodes = graph(defs)
    parents = {k: sorted(p.to_user_string() for p in n.parent_keys) for k, n in nodes.items()}
    assert parents["p1234/bar"] == ["p1234/foo"]
    assert parents["p1234/baz"] == ["p1234/foo"]
    assert parents["p1234/after_preview"] == ["p1234/detector_preview"]
    # the transient variable is no asset; its dependent links to what it read
    assert "p1234/positions" not in nodes
    assert parents["p1234/pos_range"] == ["p1234/foo"]
    # proc promotion flows downstream; user tags become Dagster tags
    assert nodes["p1234/after_preview"].tags["data"] == "proc"
    assert {"detector", "agipd_raw"} <= set(nodes["p1234/detector_preview"].tags)
    # cluster variables are their own step, in the cluster pool
    heavy = defs.resolve_assets_def(dg.AssetKey(["p1234", "heavy"]))
    assert heavy.node_def.name == "p1234_cluster" and heavy.node_def.pool == "cluster"
    assert defs.resolve_assets_def(dg.AssetKey(["p1234", "foo"])).node_def.name == "p1234_local"


def test_jobs_select_by_trigger_and_placement(tmp_path):
    defs = make_defs(tmp_path, SPEC_DEPS)

    def selected(job):
        return sorted(k.to_user_string() for k in
                      defs.resolve_job_def(job).asset_layer.executable_asset_keys)

    assert selected("proc") == ["p1234/after_preview", "p1234/detector_preview"]
    assert selected("raw") == ["p1234/bar", "p1234/baz", "p1234/foo", "p1234/pos_range"]
    assert len(selected("all")) == 6
    assert selected("all_cluster") == ["p1234/heavy"]


def test_group_variables_nest_under_their_instance(tmp_path):
    nodes = graph(make_defs(tmp_path, SPEC_GROUPS))
    corrected = nodes["p1234/xgm_sa2/corrected_energy"]
    assert [p.to_user_string() for p in corrected.parent_keys] == ["p1234/xgm_sa2/pulse_energy"]
    assert corrected.metadata["title"] == "XGM SA2/Corrected Energy"
    assert "XGM" in corrected.tags
    ppm = nodes["p1234/mid/photons_per_microjoule"]
    assert sorted(p.to_user_string() for p in ppm.parent_keys) == [
        "p1234/mid/agipd/n_photons", "p1234/mid/xgm/corrected_energy"]


def test_code_location_needs_a_damnit_folder(tmp_path, monkeypatch):
    from damnit_dagster.defs import definitions

    monkeypatch.delenv("DAMNIT_DIR", raising=False)
    with pytest.raises(Exception, match="DAMNIT_DIR"):
        definitions.defs()
    with pytest.raises(FileNotFoundError, match="runs.sqlite"):
        build_definitions(tmp_path, state_dir=tmp_path / "state")
