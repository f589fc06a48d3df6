"""``@Group`` and ``expand_groups``: the spec's group examples (shared/spec/backend.md),
on real mock runs where they read data.

Each test executes a context-file source, expands its groups and checks what a user sees:
names, titles, tags, resolved dependencies, values of the bound functions, error texts.
"""
import types

import numpy as np
import pytest

from context_loader.groups import expand_groups
from context_loader.variable import RunData
from support.group_contexts import evaluate, expand, run_code
from support.spec_examples import CROSS_GROUP, GROUP_XGM, INHERITANCE, NESTED_AS_MEANT


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    """A real raw run written by our mock-data writer (XGM at SA2_XTD1_XGM/XGM/DOOCS)."""
    from extra_data import RunDirectory

    from damnit_dagster.ops.mockdata import make_run

    root = tmp_path_factory.mktemp("groups-run")
    make_run(root, 1234, 1, ntrains=20, with_proc=False)
    return RunDirectory(root / "raw" / "r0001")


def test_spec_xgm_diagnostics_names_titles_tags_and_dependencies():
    vs = expand(GROUP_XGM)
    assert list(vs) == ["xgm_sa2.pulse_energy", "xgm_sa2.corrected_energy",
                        "xgm_hed.pulse_energy", "xgm_hed.corrected_energy"]
    assert vs["xgm_sa2.pulse_energy"].title == "XGM SA2/Pulse Energy"
    assert vs["xgm_hed.corrected_energy"].title == "XGM HED/Corrected Energy"
    assert all(v.tags == ("XGM",) for v in vs.values())
    assert all(v.summary == "mean" for v in vs.values())
    assert vs["xgm_sa2.pulse_energy"].annotations() == {}
    assert vs["xgm_sa2.corrected_energy"].annotations() == {
        "energy": "var#xgm_sa2.pulse_energy"}
    assert vs["xgm_hed.corrected_energy"].annotations() == {
        "energy": "var#xgm_hed.pulse_energy"}
    # bound to the instance: func(run, **kwargs), parameters() start after run
    assert [p.name for p in vs["xgm_sa2.corrected_energy"].parameters()] == ["energy"]
    assert vs["xgm_sa2.corrected_energy"].func(None, energy=2.0) == pytest.approx(3.1)
    assert vs["xgm_hed.corrected_energy"].func(None, energy=2.0) == pytest.approx(2.9)


def test_spec_xgm_diagnostics_reads_a_real_run(mock_run):
    from extra.components import XGM

    from damnit_dagster.ops.mockdata import XGM_SOURCE

    ns = run_code(GROUP_XGM.replace("SA2_XTD6_XGM/XGM/DOOCS", XGM_SOURCE))
    errors = {}
    results = evaluate(ns, mock_run, errors)
    expected = XGM(mock_run, XGM_SOURCE).pulse_energy()
    np.testing.assert_allclose(results["xgm_sa2.pulse_energy"], expected)
    np.testing.assert_allclose(results["xgm_sa2.corrected_energy"], expected + 1.1)
    # the HED device is not in the run: xgm_hed's own device_name reached XGM()
    assert list(errors) == ["xgm_hed.pulse_energy"]
    assert "HED_XTD9_XGM/XGM/DOOCS" in str(errors["xgm_hed.pulse_energy"])


CROSS_GROUP_FULL = GROUP_XGM + CROSS_GROUP


def test_spec_cross_group_dependencies_and_positional_title():
    ns = run_code(CROSS_GROUP_FULL)
    vs = {v.name: v for v in expand_groups(ns)}
    assert "global_offset" not in vs  # top-level variables are the loader's business
    assert vs["instance.local_var"].title == "Group/local_var"
    assert vs["instance.another_var"].title == "Group/another_var"
    assert vs["instance.local_var"].tags == ()
    assert vs["instance.local_var"].annotations() == {"offset": "var#global_offset"}
    assert vs["instance.another_var"].annotations() == {
        "xgm_energy": "var#xgm_hed.corrected_energy"}
    assert vs["instance.local_var"].func(None, offset=42) == 52
    assert ns["instance"].title == "Group"
    # evaluated: local_var gets global_offset's 42; XGM() fails without a run, so
    # another_var (no default) has no result
    errors = {}
    results = evaluate(ns, None, errors)
    assert results["instance.local_var"] == 52
    assert "instance.another_var" not in results and "xgm_hed.pulse_energy" in errors


NESTED_FULL = GROUP_XGM + NESTED_AS_MEANT


class _Key:
    """What ``run.alias[...]['photon-count']`` gives: something with ``.xarray()``."""

    def __init__(self, value):
        self.value = value

    def xarray(self):
        return self.value


def test_spec_nested_groups_names_titles_tags():
    vs = expand(NESTED_FULL)
    mid = {n: v for n, v in vs.items() if n.startswith("mid.")}
    assert set(mid) == {"mid.photons_per_microjoule", "mid.xgm.pulse_energy",
                        "mid.xgm.corrected_energy", "mid.agipd.n_photons"}
    assert mid["mid.agipd.n_photons"].title == "MID Diag/AGIPD/Photon Count"
    assert mid["mid.xgm.pulse_energy"].title == "MID Diag/XGM SA2/Pulse Energy"
    assert mid["mid.photons_per_microjoule"].title == "MID Diag/Photons per µJ"
    # tags propagate recursively, merged with the nested instance's own
    assert mid["mid.agipd.n_photons"].tags == ("Diag", "MID")
    assert mid["mid.xgm.corrected_energy"].tags == ("Diag", "MID", "SA2", "XGM")
    assert mid["mid.photons_per_microjoule"].annotations() == {
        "photons": "var#mid.agipd.n_photons", "energy": "var#mid.xgm.corrected_energy"}
    assert mid["mid.xgm.corrected_energy"].annotations() == {
        "energy": "var#mid.xgm.pulse_energy"}


def test_spec_nested_groups_values_and_user_name_field():
    ns = run_code(NESTED_FULL)
    vs = {v.name: v for v in expand_groups(ns)}
    # Detector's own field 'name' is a normal field: self.name is "AGIPD1M"
    run = types.SimpleNamespace(alias={"AGIPD1M": {"photon-count": _Key(11.0)}})
    assert vs["mid.agipd.n_photons"].func(run) == 11.0
    assert vs["mid.photons_per_microjoule"].func(None, photons=11.0, energy=2.2) \
        == pytest.approx(5.0)
    assert vs["mid.xgm.corrected_energy"].func(None, energy=1.0) == pytest.approx(2.1)
    assert ns["mid"].agipd.name == "AGIPD1M"


def test_class_level_nested_instance_is_per_owner():
    ns = run_code(NESTED_FULL + "mid2 = MIDDiagnostics()\n")
    vs = {v.name: v for v in expand_groups(ns)}
    assert ns["mid"].agipd is not ns["mid2"].agipd
    assert ns["mid"].agipd is not ns["MIDDiagnostics"].agipd
    assert vs["mid2.agipd.n_photons"].title == "MID Diag/AGIPD/Photon Count"
    # mid2 has no xgm: a transient placeholder returning None stands in for it
    assert vs["mid2.photons_per_microjoule"].annotations() == {
        "photons": "var#mid2.agipd.n_photons",
        "energy": "var#mid2.__missing__.xgm.corrected_energy"}
    placeholder = vs["mid2.__missing__.xgm.corrected_energy"]
    assert placeholder.transient and placeholder.func(None) is None
    assert not any(n.startswith("mid.__missing__") for n in vs)


def test_declared_field_with_a_group_default():
    vs = expand("""
    @Group
    class Det:
        source: str = "LPD"

        @Variable
        def src(self, run):
            return self.source

    @Group(title="Outer")
    class Outer:
        det: Det = Det(title="Big", source="AGIPD")
        @Variable
        def total(self, run, s: "self#det.src"):
            return s

    a = Outer()
    b = Outer(det=Det(source="JF"))
    """)
    assert vs["a.det.src"].title == "Outer/Big/src"
    assert vs["a.det.src"].func(None) == "AGIPD"
    assert vs["b.det.src"].title == "Outer/det/src"
    assert vs["b.det.src"].func(None) == "JF"
    assert vs["a.total"].annotations() == {"s": "var#a.det.src"}




def test_spec_inheritance(mock_run):
    ns = run_code(INHERITANCE + """
plain = DetectorAnalysis()
alt = DetectorAnalysisAlt()
base = BaseAnalysis(tags="B")
""")
    vs = {v.name: v for v in expand_groups(ns)}
    assert [n for n in vs if n.startswith("detector.")] == [
        "detector.n_trains", "detector.photon_count"]
    assert vs["detector.n_trains"].title == "Detector/Train Count"
    assert vs["detector.photon_count"].title == "Detector/Photon Count"
    assert vs["detector.photon_count"].data is RunData.PROC
    assert vs["detector.n_trains"].data is RunData.RAW
    assert vs["detector.photon_count"].annotations() == {"n_trains": "var#detector.n_trains"}
    # an undecorated subclass inherits title='Base'
    assert vs["plain.photon_count"].title == "Base/Photon Count"
    # a decorated subclass resets the title and has its own tags
    assert vs["alt.n_trains"].title == "alt/Train Count"
    assert vs["alt.n_trains"].tags == ("Alt",)
    assert "alt.photon_count" not in vs
    assert vs["base.n_trains"].tags == ("B",)
    results = evaluate(ns, mock_run)
    assert results["detector.n_trains"] == 20
    assert results["detector.photon_count"] == pytest.approx(5e4)
