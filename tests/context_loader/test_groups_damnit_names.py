"""``@Group`` and ``expand_groups``: DAMNIT 0.4.0's group behaviours
(tests/test_ctx_groups.py), adapted where our spec differs (see docs/groups.md):
the names of instances and nested instances, placeholders, defaults and dependencies.

Each test executes a context-file source, expands its groups and checks what a user sees:
names, titles, tags, resolved dependencies, values of the bound functions, error texts.
"""

import pytest

from context_loader.errors import GroupError
from context_loader.groups import expand_groups
from support.group_contexts import INNER_OUTER, SIMPLE_G, evaluate, expand, run_code


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
