"""``@Group`` and ``expand_groups``: DAMNIT 0.4.0's group behaviours
(tests/test_ctx_groups.py), adapted where our spec differs (see docs/groups.md):
links between instances, globs, self-annotations and variable fields.

Each test executes a context-file source, expands its groups and checks what a user sees:
names, titles, tags, resolved dependencies, values of the bound functions, error texts.
"""

import pytest

from context_loader.errors import GroupError
from context_loader.groups import GroupVariable, expand_groups
from context_loader.variable import Variable
from support.group_contexts import evaluate, expand, run_code


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
