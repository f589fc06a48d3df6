"""``@Group`` and ``expand_groups``: our own decisions where DAMNIT 0.4.0 has none
(see docs/groups.md).

Each test executes a context-file source, expands its groups and checks what a user sees:
names, titles, tags, resolved dependencies, values of the bound functions, error texts.
"""

import pytest

from context_loader.errors import GroupError
from context_loader.groups import expand_groups
from context_loader.variable import RunData
from support.group_contexts import INNER_OUTER, SIMPLE_G, evaluate, expand, run_code


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
