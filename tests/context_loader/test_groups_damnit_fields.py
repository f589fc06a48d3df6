"""``@Group`` and ``expand_groups``: DAMNIT 0.4.0's group behaviours
(tests/test_ctx_groups.py), adapted where our spec differs (see docs/groups.md):
cycles, fields and class attributes, reserved properties, subclasses, clashing names.

Each test executes a context-file source, expands its groups and checks what a user sees:
names, titles, tags, resolved dependencies, values of the bound functions, error texts.
"""
import graphlib

import pytest

from context_loader.errors import GroupError
from context_loader.groups import expand_groups
from support.group_contexts import INNER_OUTER, SIMPLE_G, evaluate, expand, run_code


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
