"""``@Group`` and ``expand_groups``: the spec's examples and DAMNIT 0.4.0's group behaviours
(tests/test_ctx_groups.py), adapted where our spec differs (see context_loader/groups.py).

Each test executes a context-file source, expands its groups and checks what a user sees:
names, titles, tags, resolved dependencies, values of the bound functions, error texts.
"""
import fnmatch
import graphlib
import inspect
import textwrap
import types

import numpy as np
import pytest

from context_loader.errors import GroupError
from context_loader.groups import GroupVariable, expand_groups
from context_loader.variable import RunData, Variable
from support.spec_examples import CROSS_GROUP, GROUP_XGM, INHERITANCE, NESTED_AS_MEANT

PRELUDE = ("from context_loader.variable import Variable\n"
           "from context_loader.groups import Group\n")


def run_code(code: str) -> dict:
    """The namespace of an executed context-file source."""
    code = textwrap.dedent(code).lstrip()
    future = ""
    if code.startswith("from __future__"):
        future, _, code = code.partition("\n")
    namespace = {}
    exec(compile(f"{future}\n{PRELUDE}{code}", "<context>", "exec"), namespace)
    return namespace


def expand(code: str) -> dict[str, Variable]:
    """The group variables of a context-file source, by name."""
    variables = expand_groups(run_code(code))
    names = [v.name for v in variables]
    assert len(names) == len(set(names))
    return {v.name: v for v in variables}


def evaluate(namespace: dict, run=None, errors=None) -> dict:
    """Results of all variables (top-level and group ones) in dependency order, with
    DAMNIT's rules: a dependency without a result gives the argument's default, or skips
    the variable; a glob dependency gives {name: value} of the results that exist.
    A variable that raises has no result; its exception goes into ``errors``."""
    variables = {v.name: v for v in namespace.values() if isinstance(v, Variable)}
    variables.update((v.name, v) for v in expand_groups(namespace))

    def matches(pattern):
        if any(c in pattern for c in "*?["):
            return [n for n in variables if fnmatch.fnmatchcase(n, pattern)]
        return [pattern]

    graph = {name: {dep for ann in var.annotations().values() if ann.startswith("var#")
                    for dep in matches(ann[4:])}
             for name, var in variables.items()}
    results = {}
    for name in graphlib.TopologicalSorter(graph).static_order():
        var = variables[name]
        kwargs, skip = {}, False
        for p in var.parameters():
            ann = var.annotations().get(p.name, "")
            if not ann.startswith("var#"):
                continue
            pattern = ann[4:]
            if any(c in pattern for c in "*?["):
                found = {n: results[n] for n in matches(pattern) if n in results}
                value = found or None
            else:
                value = results.get(pattern)
            if value is not None:
                kwargs[p.name] = value
            elif p.default is inspect.Parameter.empty:
                skip = True
        if skip:
            continue
        try:
            value = var.func(run, **kwargs)
        except Exception as e:
            if errors is None:
                raise
            errors[name] = e
            continue
        if value is not None:
            results[name] = value
    return results


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    """A real raw run written by our mock-data writer (XGM at SA2_XTD1_XGM/XGM/DOOCS)."""
    from extra_data import RunDirectory

    from damnit_dagster.ops.mockdata import make_run

    root = tmp_path_factory.mktemp("groups-run")
    make_run(root, 1234, 1, ntrains=20, with_proc=False)
    return RunDirectory(root / "raw" / "r0001")


# -- the spec's examples ------------------------------------------------------------------

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


# -- DAMNIT's group behaviours (tests/test_ctx_groups.py) ---------------------------------

def test_instance_attribute_is_a_variable_link():
    ns = run_code("""
    @Variable
    def var(run):
        return 42

    @Group
    class Grp:
        ref: Variable = None
        grp_ref: Group = None

        @Variable(tags='G!')
        def grp_var(self, run):
            return 1 / 42

    group1 = Grp()
    group2 = Grp(ref=var, grp_ref=group1)
    """)
    g1, g2 = ns["group1"], ns["group2"]
    assert isinstance(ns["Grp"].grp_var, Variable)
    assert isinstance(g1.grp_var, GroupVariable) and g1.grp_var.group is g1
    assert g2.grp_ref.grp_var.group is g1
    assert g2.ref is ns["var"] and g1.ref is None
    vs = {v.name: v for v in expand_groups(ns)}
    assert set(vs) == {"group1.grp_var", "group2.grp_var"}
    assert vs["group1.grp_var"].tags == ("G!",)


def test_explicit_name_title_and_tags():
    vs = expand("""
    @Group(tags=["XGM"])
    class XGM:
        device_name: str

        @Variable(title="Pulse Energy", tags=["Energy"])
        def pulse_energy(self, run):
            return self.device_name

    xgm = XGM(name="xgm_sa2", title="XGM Diag", device_name="SA2_XTD6_XGM/XGM/DOOCS")
    """)
    assert list(vs) == ["xgm_sa2.pulse_energy"]
    var = vs["xgm_sa2.pulse_energy"]
    assert var.title == "XGM Diag/Pulse Energy"
    assert var.tags == ("Energy", "XGM")
    assert var.func(None) == "SA2_XTD6_XGM/XGM/DOOCS"


def test_required_field_missing_is_a_type_error():
    with pytest.raises(TypeError, match="device_name"):
        run_code("""
        @Group
        class XGM:
            device_name: str

        xgm = XGM()
        """)


def test_nested_link_with_explicit_child_name():
    vs = expand("""
    @Group
    class Inner:
        @Variable
        def energy(self, run):
            return 1

    @Group
    class Outer:
        inner: Inner

        @Variable
        def scaled(self, run, energy: "self#inner.energy", factor: int = 2):
            return energy * factor

    outer = Outer(name="outer", inner=Inner(name="blah"))
    """)
    assert set(vs) == {"blah.energy", "outer.scaled"}
    assert vs["outer.scaled"].annotations() == {"energy": "var#blah.energy"}
    assert vs["blah.energy"].title == "blah/energy"   # an explicit name starts a new path


GLOB = """
@Group
class Other:
    @Variable
    def var_a(self, run):
        return 1

    @Variable
    def var_b(self, run):
        return 2

@Group
class G:
    other: Other

    @Variable
    def total(self, run, data: "self#other.var_*"):
        return sum(data.values())

g = G(other=Other(name="blah"))
"""


def test_glob_into_nested_group():
    ns = run_code(GLOB)
    vs = {v.name: v for v in expand_groups(ns)}
    assert set(vs) == {"blah.var_a", "blah.var_b", "g.total"}
    assert vs["g.total"].annotations() == {"data": "var#blah.var_*"}
    assert evaluate(ns)["g.total"] == 3


def test_glob_in_own_group_and_missing_upstream_skips():
    ns = run_code("""
    @Group
    class Upstream:
        @Variable
        def x(self, run):
            return 1

    @Group
    class G:
        upstream: Upstream | None = None

        @Variable
        def var_a(self, run, x: "self#upstream.x"):
            return x + 1

        @Variable
        def var_b(self, run, x: "self#upstream.x"):
            return x + 2

        @Variable
        def total(self, run, data: "self#var_*"):
            return sum(data.values())

    g = G()
    g2 = G(upstream=Upstream(name="u"))
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["g2.total"].annotations() == {"data": "var#g2.var_*"}
    assert vs["g.var_a"].annotations() == {"x": "var#g.__missing__.upstream.x"}
    assert vs["g2.var_a"].annotations() == {"x": "var#u.x"}
    # one placeholder serves both dependents
    assert [n for n in vs if "__missing__" in n] == ["g.__missing__.upstream.x"]
    results = evaluate(ns)
    assert "g.var_a" not in results and "g.total" not in results
    assert results["g2.total"] == 5


def test_glob_only_in_the_last_part():
    with pytest.raises(GroupError, match=r"'g.out'.*'self#other\*\.var'.*only allowed"):
        expand("""
        @Group
        class Other:
            @Variable
            def var(self, run):
                return 1

        @Group
        class G:
            other: Other

            @Variable
            def out(self, run, v: "self#other*.var"):
                return v

        g = G(other=Other(name="other"))
        """)


def test_missing_group_with_glob_pattern_placeholder_name():
    vs = expand("""
    @Group
    class Other:
        @Variable
        def var_a(self, run):
            return 1

    @Group
    class G:
        other: Other | None = None

        @Variable
        def total(self, run, data: "self#other.var_*"):
            return sum(data.values())

    g = G(name="g")
    """)
    assert vs["g.total"].annotations() == {"data": "var#g.__missing__.other.var__"}
    assert "g.__missing__.other.var__" in vs


def test_self_annotation_to_missing_attribute():
    with pytest.raises(GroupError) as exc:
        expand("""
        @Group
        class G:
            @Variable
            def out(self, run, v: "self#no_such_group.x"):
                return v

        g = G()
        """)
    assert str(exc.value) == (
        "Variable 'g.out' of group 'g' (G), argument 'v': 'self#no_such_group.x': "
        "group 'g' (G) has no attribute 'no_such_group'")


def test_self_annotation_to_non_variable():
    with pytest.raises(GroupError) as exc:
        expand("""
        @Group
        class G:
            blah: int = 5

            @Variable
            def out(self, run, v: "self#blah"):
                return v ** 2

        g = G()
        """)
    assert str(exc.value) == (
        "Variable 'g.out' of group 'g' (G), argument 'v': 'self#blah': 'blah' of group 'g' "
        "(G) is of type 'int', but a Variable is required for a self# dependency")


def test_self_annotation_path_errors():
    code = """
    @Group
    class Inner:
        size: int = 3
        @Variable
        def val(self, run):
            return 1

    @Group
    class G:
        inner: Inner
        @Variable
        def out(self, run, v: "self#PATH"):
            return v

    g = G(inner=Inner())
    """
    cases = {
        "inner": "'inner' is a group (Inner); name one of its variables",
        "inner.size.x": "'size' of group 'g.inner' (Inner) is of type 'int', not a group, "
                        "so it has no 'x'",
        "inner.val.x": "'val' of group 'g.inner' (Inner) is of type 'GroupVariable', "
                       "not a group",
        "inner.nope": "group 'g.inner' (Inner) has no attribute 'nope'",
        "inner..val": "expected 'self#<attribute>[.<attribute>...]'",
    }
    for path, message in cases.items():
        with pytest.raises(GroupError, match="'g.out'") as exc:
            expand(code.replace("PATH", path))
        assert f"'self#{path}'" in str(exc.value) and message in str(exc.value)


def test_variable_field_linking():
    ns = run_code("""
    @Variable
    def base(run):
        return 1

    @Group
    class A:
        v: Variable

        @Variable
        def asdf(self, run, data: "self#v"):
            return data + 1

    a1 = A(name="a1", v=base)
    a2 = A(name="a2", v=a1.asdf)
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["a1.asdf"].annotations() == {"data": "var#base"}
    assert vs["a2.asdf"].annotations() == {"data": "var#a1.asdf"}
    results = evaluate(ns)
    assert (results["base"], results["a1.asdf"], results["a2.asdf"]) == (1, 2, 3)


def test_link_to_an_instance_outside_the_context_is_an_error():
    with pytest.raises(GroupError, match="links to variable 'asdf' of a A instance that "
                                         "is not in the context file"):
        expand("""
        @Group
        class A:
            v: Variable = None

            @Variable
            def asdf(self, run, data: "self#v"):
                return data + 1

        a2 = A(v=A().asdf)
        """)


def test_nested_variable_field_chain():
    ns = run_code("""
    @Variable
    def base(run):
        return 5

    @Group
    class Leaf:
        linked_base: Variable
        scale: int = 2

        @Variable
        def scaled(self, run, value: "self#linked_base"):
            return value * self.scale

    @Group
    class Mid:
        leaf: Leaf
        offset: int = 4

        @Variable
        def total(self, run, value: "self#leaf.scaled"):
            return value + self.offset

    @Group
    class Outer:
        mid: Mid
        factor: int = 2

        @Variable
        def final(self, run, value: "self#mid.total"):
            return value * self.factor

        @Variable
        def extra(self, run, value: "self#mid.leaf.linked_base"):
            return 2 * value

    leaf = Leaf(name="leaf", linked_base=base, scale=2)
    mid = Mid(name="mid", leaf=leaf, offset=4)
    outer = Outer(name="outer", mid=mid, factor=2)
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["leaf.scaled"].annotations() == {"value": "var#base"}
    assert vs["mid.total"].annotations() == {"value": "var#leaf.scaled"}
    assert vs["outer.final"].annotations() == {"value": "var#mid.total"}
    assert vs["outer.extra"].annotations() == {"value": "var#base"}
    results = evaluate(ns)
    assert [results[n] for n in ("base", "leaf.scaled", "mid.total", "outer.final",
                                 "outer.extra")] == [5, 10, 14, 28, 10]


SIMPLE_G = """
@Group
class G:
    @Variable
    def val(self, run):
        return 3
"""


def test_name_from_the_global_assignment():
    vs = expand(SIMPLE_G + "group_name = G()\n")
    assert list(vs) == ["group_name.val"]
    assert vs["group_name.val"].title == "group_name/val"
    assert vs["group_name.val"].func(None) == 3


def test_explicit_name_overrides_the_global_name():
    vs = expand(SIMPLE_G + "g = G(name='instance')\n")
    assert list(vs) == ["instance.val"]
    assert vs["instance.val"].title == "instance/val"


def test_explicit_dotted_name():
    vs = expand(SIMPLE_G + "g = G(name='explicit.dot')\n")
    assert list(vs) == ["explicit.dot.val"]
    assert vs["explicit.dot.val"].title == "explicit.dot/val"


@pytest.mark.parametrize("bad", ["''", "'has space'", "'a..b'", "3"])
def test_invalid_explicit_name(bad):
    with pytest.raises(GroupError, match=r"G\(...\): name=.* must be a Python identifier"):
        run_code(SIMPLE_G + f"g = G(name={bad})\n")


INNER_OUTER = """
@Group
class Inner:
    @Variable
    def val(self, run):
        return 1

@Group
class Outer:
    inner: Inner

    @Variable
    def out(self, run, val: "self#inner.val"):
        return val + 1
"""


def test_nested_instance_named_by_path():
    ns = run_code(INNER_OUTER + "outer = Outer(inner=Inner())\n")
    vs = {v.name: v for v in expand_groups(ns)}
    assert set(vs) == {"outer.inner.val", "outer.out"}
    assert vs["outer.out"].annotations() == {"val": "var#outer.inner.val"}
    assert vs["outer.inner.val"].title == "outer/inner/val"
    assert evaluate(ns) == {"outer.inner.val": 1, "outer.out": 2}


def test_shortest_path_wins():
    vs = expand(INNER_OUTER + "inner = Inner()\nouter = Outer(inner=inner)\n")
    assert set(vs) == {"inner.val", "outer.out"}
    assert vs["outer.out"].annotations() == {"val": "var#inner.val"}
    assert vs["inner.val"].title == "inner/val"


def test_nested_name_uses_the_parents_explicit_name():
    vs = expand(INNER_OUTER + "outer = Outer(name='explicit', inner=Inner())\n")
    assert set(vs) == {"explicit.inner.val", "explicit.out"}
    assert vs["explicit.out"].annotations() == {"val": "var#explicit.inner.val"}


def test_explicit_child_name_overrides_the_nested_path():
    ns = run_code(INNER_OUTER + "inner = Inner(name='custom')\nouter = Outer(inner=inner)\n")
    vs = {v.name: v for v in expand_groups(ns)}
    assert set(vs) == {"custom.val", "outer.out"}
    assert vs["outer.out"].annotations() == {"val": "var#custom.val"}
    assert evaluate(ns) == {"custom.val": 1, "outer.out": 2}


def test_shared_unnamed_instance_at_the_same_depth_is_ambiguous():
    with pytest.raises(GroupError) as exc:
        expand(INNER_OUTER + "__shared = Inner()\nouter1 = Outer(inner=__shared)\n"
                             "outer2 = Outer(inner=__shared)\n")
    assert str(exc.value).startswith(
        "Group instance of 'Inner' is assigned to multiple names "
        "['outer1.inner', 'outer2.inner'] without an explicit name")


def test_shallower_path_wins():
    vs = expand(INNER_OUTER + """
@Group
class Mid:
    inner: Inner

@Group
class Top:
    mid: Mid

@Group
class Alt:
    inner: Inner

    @Variable
    def out(self, run, val: "self#inner.val"):
        return val + 1

shared = Inner()
top = Top(mid=Mid(inner=shared))
alt = Alt(inner=shared)
deep = Top(mid=Mid(inner=Inner()))
""")
    assert "shared.val" in vs and "alt.inner.val" not in vs
    assert "top.mid.inner.val" not in vs
    assert vs["alt.out"].annotations() == {"val": "var#shared.val"}
    assert vs["deep.mid.inner.val"].title == "deep/mid/inner/val"


def test_optional_component_placeholders_and_defaults():
    ns = run_code("""
    @Variable
    def var(run):
        return 1

    @Group
    class A:
        @Variable
        def var(self, run):
            return 41

    @Group
    class B:
        upstream: A | None = None
        other_var: Variable | None = None

        @Variable
        def needs_upstream(self, run, value: "self#upstream.var"):
            return value + 1

        @Variable
        def optional_upstream(self, run, value: "self#upstream.var" = 42,
                              other_value: "self#other_var" = -1):
            return other_value * (value + 1)

    b = B(name="b")
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["b.optional_upstream"].annotations() == {
        "value": "var#b.__missing__.upstream.var", "other_value": "var#b.__missing__.other_var"}
    for name in ("b.__missing__.upstream.var", "b.__missing__.other_var"):
        assert vs[name].transient and vs[name].title == name and vs[name].tags == ()
    results = evaluate(ns)
    assert "b.needs_upstream" in vs and "b.needs_upstream" not in results
    assert results["b.optional_upstream"] == -43


def test_intra_dependencies_and_instance_overrides():
    ns = run_code("""
    @Group(tags=["Default"])
    class G:
        offset: float = 0.0

        @Variable(title="Base", tags=["Base"])
        def base(self, run):
            return 10

        @Variable(title="Adjusted")
        def adjusted(self, run, base: "self#base"):
            return base + self.offset

    g = G(name="g", title="MyDiag", offset=5, tags="Override")
    d = G()
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["g.adjusted"].annotations() == {"base": "var#g.base"}
    assert vs["g.adjusted"].title == "MyDiag/Adjusted"
    assert vs["g.base"].tags == ("Base", "Override")
    assert vs["g.adjusted"].tags == ("Override",)
    assert vs["d.base"].tags == ("Base", "Default")
    results = evaluate(ns)
    assert (results["g.base"], results["g.adjusted"], results["d.adjusted"]) == (10, 15, 10)


def test_cross_group_link_and_custom_separator():
    ns = run_code("""
    @Group
    class XGM:
        offset: float = 0.0

        @Variable(title="Energy")
        def energy(self, run):
            return 10

        @Variable(title="Corrected")
        def corrected(self, run, energy: "self#energy"):
            return energy + self.offset

    @Group
    class MID:
        xgm: XGM
        factor: float = 2.0

        @Variable(title="Scaled")
        def scaled(self, run, energy: "self#xgm.corrected"):
            return energy * self.factor

    xgm_sa2 = XGM(name="xgm_sa2", title="XGM", offset=1.5, tags="XGM")
    mid = MID(name="mid", title="MID", sep=" | ", xgm=xgm_sa2, factor=3)
    nested = MID(title="N", sep=" | ", xgm=XGM(title="X", sep=":"))
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["mid.scaled"].annotations() == {"energy": "var#xgm_sa2.corrected"}
    assert vs["mid.scaled"].title == "MID | Scaled"
    assert vs["xgm_sa2.corrected"].title == "XGM/Corrected"
    # each level's own sep follows its title
    assert vs["nested.xgm.corrected"].title == "N | X:Corrected"
    results = evaluate(ns)
    assert results["xgm_sa2.corrected"] == pytest.approx(11.5)
    assert results["mid.scaled"] == pytest.approx(34.5)


def test_missing_upstream_cascades_until_a_default():
    ns = run_code("""
    @Group
    class Upstream:
        @Variable
        def var(self, run):
            return 100

    @Group
    class G:
        upstream: Upstream | None = None

        @Variable
        def d(self, run, v: "self#c"):
            return v * 2

        @Variable
        def c(self, run, v: "self#a" = 5):
            return v + 1

        @Variable
        def e(self, run, base: "self#base", v: "self#a" = 10):
            return base + v

        @Variable
        def required_from_b(self, run, v: "self#b"):
            return v * 10

        @Variable
        def optional_from_b(self, run, v: "self#b" = 3):
            return v * 10

        @Variable
        def b(self, run, v: "self#a"):
            return v + 1

        @Variable
        def a(self, run, v: "self#upstream.var"):
            return v + 1

        @Variable
        def base(self, run):
            return 2

    g = G(name="grp")
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["grp.a"].annotations() == {"v": "var#grp.__missing__.upstream.var"}
    assert vs["grp.e"].annotations() == {"base": "var#grp.base", "v": "var#grp.a"}
    results = evaluate(ns)
    assert not {"grp.a", "grp.b", "grp.required_from_b"} & set(results)
    assert [results[f"grp.{n}"] for n in ("c", "optional_from_b", "base", "d", "e")] \
        == [6, 30, 2, 12, 12]


def test_internal_cycle_is_left_to_the_dependency_sort():
    ns = run_code("""
    @Group
    class G:
        @Variable
        def a(self, run, v: "self#b"):
            return v + 1

        @Variable
        def b(self, run, v: "self#a"):
            return v + 1

    g = G(name="g")
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["g.a"].annotations() == {"v": "var#g.b"}
    assert vs["g.b"].annotations() == {"v": "var#g.a"}
    with pytest.raises(graphlib.CycleError):
        evaluate(ns)


def test_user_field_called_name_is_a_normal_field():
    # DAMNIT 0.4.0 rejects this; the spec's Detector example needs it
    ns = run_code("""
    @Group
    class Named:
        name: str

        @Variable
        def val(self, run):
            return self.name

    bad = Named(name="bad")
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert list(vs) == ["bad.val"]
    assert vs["bad.val"].func(None) == "bad"


def test_user_class_attribute_called_name_is_not_the_instance_name():
    vs = expand("""
    @Group
    class Named:
        name = "fixed"

        @Variable
        def val(self, run):
            return self.name

    det = Named()
    """)
    assert list(vs) == ["det.val"]
    assert vs["det.val"].func(None) == "fixed"


@pytest.mark.parametrize("body", ["tags = ['nope']", "title: str = 'x'", "sep = ':'",
                                  "tags: list"])
def test_reserved_group_properties_rejected(body):
    with pytest.raises(GroupError) as exc:
        run_code(f"""
@Group
class Bad:
    {body}

    @Variable
    def val(self, run):
        return 1
""")
    prop = body.split()[0].rstrip(":")
    assert str(exc.value).startswith(f"Group class 'Bad' cannot define '{prop}': these are "
                                     "group properties")


def test_explicit_names_avoid_ambiguity():
    vs = expand(INNER_OUTER + """
shared = Inner(name="shared")
outer1 = Outer(inner=shared)
outer2 = Outer(inner=Inner(name="inner2"))
outer3 = Outer(inner=Inner())
""")
    assert {"shared.val", "inner2.val", "outer3.inner.val"} <= set(vs)
    assert vs["outer1.out"].annotations() == {"val": "var#shared.val"}
    assert vs["outer2.out"].annotations() == {"val": "var#inner2.val"}
    assert vs["outer3.out"].annotations() == {"val": "var#outer3.inner.val"}


def test_decorated_subclass_resets_properties():
    # DAMNIT 0.4.0 inherits the decorator tags; our spec resets them
    ns = run_code("""
    @Group(tags=["BaseTag"], title="B")
    class Base:
        @Variable(title="BaseVar")
        def base(self, run):
            return 5

    @Group
    class Derived(Base):
        @Variable(title="ChildVar")
        def child(self, run, base: "self#base"):
            return base + 1

    @Group(tags=["AltTag"])
    class DerivedAlt(Base):
        @Variable(title="AltVar")
        def alt(self, run):
            return 7

    class Plain(Base):
        pass

    derived = Derived(name="derived")
    alt = DerivedAlt(name="alt", title="Alt")
    plain = Plain()
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["derived.base"].title == "derived/BaseVar"
    assert vs["derived.child"].title == "derived/ChildVar"
    assert vs["derived.base"].tags == ()
    assert vs["alt.base"].title == "Alt/BaseVar"
    assert vs["alt.alt"].title == "Alt/AltVar"
    assert vs["alt.base"].tags == ("AltTag",)
    assert vs["plain.base"].title == "B/BaseVar" and vs["plain.base"].tags == ("BaseTag",)
    results = evaluate(ns)
    assert [results[n] for n in ("derived.base", "derived.child", "alt.base", "alt.alt")] \
        == [5, 6, 5, 7]


def test_parent_and_child_dataclass_fields():
    ns = run_code("""
    @Group
    class A:
        label: str

        @Variable
        def label_len(self, run):
            return len(self.label)

    @Group
    class B(A):
        age: int

        @Variable
        def age_plus(self, run):
            return self.age + 1

    b = B(label="asdf", age=12)
    """)
    assert evaluate(ns) == {"b.label_len": 4, "b.age_plus": 13}


def test_non_default_field_after_a_defaulted_parent_field():
    ns = run_code("""
    @Group
    class A:
        base: int = 1

        @Variable
        def base_val(self, run):
            return self.base

    @Group
    class B(A):
        value: int

        @Variable
        def combined(self, run):
            return self.base + self.value

    b = B(value=3)
    """)
    assert evaluate(ns) == {"b.base_val": 1, "b.combined": 4}


def test_two_instances_with_one_name():
    with pytest.raises(GroupError, match="Group name 'dup' is used by multiple group "
                                         r"instances \(G and G\)"):
        expand(SIMPLE_G + "g1 = G(name='dup')\ng2 = G(name='dup')\n")
    with pytest.raises(GroupError, match="Group name 'g' is used by multiple"):
        expand(SIMPLE_G + "g = G()\nh = G(name='g')\n")


def test_one_instance_under_two_global_names():
    with pytest.raises(GroupError, match=r"assigned to multiple names \['alias', 'g'\]"):
        expand(SIMPLE_G + "g = G()\nalias = g\n")


def test_group_variable_with_a_top_level_name():
    with pytest.raises(GroupError) as exc:
        expand(SIMPLE_G + """
@Variable
def dummy(run):
    return 42
dummy.name = "g.val"

g = G()
""")
    assert str(exc.value) == ("Duplicate variable name 'g.val' from group 'g': a top-level "
                              "Variable has the same name")


# -- our own decisions ----------------------------------------------------------------------

def test_group_properties_are_checked_at_instantiation():
    with pytest.raises(TypeError):
        run_code(SIMPLE_G + "g = G('a', 'b')\n")   # only the title is positional
    with pytest.raises(TypeError, match="multiple values"):
        run_code(SIMPLE_G + "g = G('a', title='b')\n")
    cases = {"title=3": "G(...): title=3 must be a string",
             "sep=None": "G(...): sep=None must be a string",
             "tags=[1]": "G(...): tags=[1] must be a non-empty string or a list",
             "tags=''": "G(...): tags='' must be a non-empty string or a list"}
    for args, message in cases.items():
        with pytest.raises(GroupError) as exc:
            run_code(SIMPLE_G + f"g = G({args})\n")
        assert str(exc.value).startswith(message)


def test_tags_from_any_iterable():
    vs = expand(SIMPLE_G + "g = G(tags=(t for t in ['b', 'a']))\n")
    assert vs["g.val"].tags == ("a", "b")


def test_group_from_a_property_is_not_part_of_the_context():
    with pytest.raises(GroupError, match="'inner' of group 'g' \\(G\\) is a group instance "
                                         "that is not stored on the instance"):
        expand(INNER_OUTER.replace("class Outer", "class Unused") + """
@Group
class G:
    @property
    def inner(self):
        return Inner()

    @Variable
    def out(self, run, v: "self#inner.val"):
        return v

g = G()
""")


def test_decorator_arguments_are_checked():
    with pytest.raises(TypeError, match=r"for a title write @Group\(title=...\)"):
        run_code("@Group('Title')\nclass G:\n    pass\n")
    with pytest.raises(GroupError, match=r"@Group\(...\): tags=5"):
        run_code("@Group(tags=5)\nclass G:\n    pass\n")


def test_properties_changed_after_instantiation_are_checked():
    ns = run_code(SIMPLE_G + "g = G()\ng.sep = 1\n")
    with pytest.raises(GroupError, match="group 'g': sep=1 must be a string"):
        expand_groups(ns)


def test_variables_removed_or_replaced_in_a_subclass():
    vs = expand("""
    @Group
    class Base:
        @Variable(title="One")
        def one(self, run):
            return 1

        @Variable
        def two(self, run):
            return 2

    class Sub(Base):
        two = None

        @Variable(title="Uno")
        def one(self, run):
            return 11

    s = Sub()
    """)
    assert list(vs) == ["s.one"]
    assert vs["s.one"].title == "s/Uno" and vs["s.one"].func(None) == 11


def test_per_variable_properties_are_kept():
    vs = expand("""
    @Group(tags="G")
    class G:
        @Variable(title="T", description="what", data="proc", cluster=True,
                  transient=True, units="uJ", summary="max")
        def a(self, run):
            '''docstring'''
            return 1

        @Variable
        def b(self, run):
            '''Documented here.'''
            return 2

    g = G()
    """)
    a, b = vs["g.a"], vs["g.b"]
    assert (a.data, a.cluster, a.transient, a.units, a.summary, a.description) == (
        RunData.PROC, True, True, "uJ", "max", "what")
    assert (b.data, b.cluster, b.transient, b.description) == (
        RunData.RAW, False, False, "Documented here.")
    assert b.title == "g/b" and b.tags == ("G",)


def test_other_annotations_pass_through_and_future_annotations():
    ns = run_code("""
    from __future__ import annotations

    @Group
    class G:
        factor: int = 2

        @Variable
        def base(self, run):
            return 3

        @Variable
        def out(self, run, b: "self#base", n: "meta#run_number", k: int = 4,
                s: "mymdc#sample_name" = None):
            return b * self.factor + n + k

    g = G()
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert vs["g.out"].annotations() == {"b": "var#g.base", "n": "meta#run_number",
                                         "k": "int", "s": "mymdc#sample_name"}
    assert vs["g.out"].func(None, b=3, n=100) == 110


def test_top_level_variable_as_class_attribute_is_a_link_not_a_method():
    ns = run_code("""
    @Variable
    def base(run):
        return 7

    @Group
    class G:
        v = base

        @Variable
        def twice(self, run, x: "self#v"):
            return 2 * x

    g = G()
    """)
    vs = {v.name: v for v in expand_groups(ns)}
    assert list(vs) == ["g.twice"]
    assert vs["g.twice"].annotations() == {"x": "var#base"}
    assert evaluate(ns)["g.twice"] == 14


def test_method_without_run_argument():
    with pytest.raises(GroupError, match=r"Variable 'g.f' of group 'g': a group method takes "
                                         r"\(self, run, ...\)"):
        expand("""
        @Group
        class G:
            @Variable
            def f(self):
                return 1

        g = G()
        """)


def test_expansion_is_repeatable_and_leaves_instances_alone():
    ns = run_code(INNER_OUTER + "outer = Outer(inner=Inner())\n")
    first = [(v.name, v.title, v.annotations()) for v in expand_groups(ns)]
    second = [(v.name, v.title, v.annotations()) for v in expand_groups(ns)]
    assert first == second
    assert ns["outer"].name is None and ns["outer"].inner.title is None


def test_no_groups():
    assert expand_groups(run_code("@Variable\ndef v(run):\n    return 1\n")) == []
