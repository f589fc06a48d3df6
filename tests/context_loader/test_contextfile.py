"""Loading a context file: the variables, their graph and order, promotion, selection,
code versions and the metadata the Dagster side reads."""
import json
import textwrap

import pytest

from context_loader.contextfile import ContextFile
from context_loader.errors import ContextFileErrors
from context_loader.variable import RunData
from support.damnit_mock_context import MOCK_CODE


def load(code, path="context.py"):
    return ContextFile.from_str(textwrap.dedent(code), path)


@pytest.fixture(scope="module")
def mock_ctx():
    return load(MOCK_CODE)


def test_from_str_and_from_path(tmp_path):
    code = ('from damnit_ctx import Variable\n\n@Variable(title="Foo")\n'
            'def foo(run):\n    return 42\n')
    ctx = load(code)
    assert list(ctx.vars) == ["foo"] and ctx.code == code and ctx.path == "context.py"
    path = tmp_path / "context.py"
    path.write_text(code)
    ctx = ContextFile.from_path(path)
    assert list(ctx.vars) == ["foo"] and ctx.path == str(path)
    assert ctx.vars["foo"].title == "Foo"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ContextFileErrors) as e:
        ContextFile.from_path(tmp_path / "nope.py")
    assert str(e.value).startswith(f"{tmp_path / 'nope.py'}: cannot read the context file")


def test_dependencies_and_order_match_damnit(mock_ctx):
    assert mock_ctx.direct_deps("scalar2") == {"scalar1"}
    assert mock_ctx.direct_deps("array") == {"scalar1", "scalar2"}
    assert mock_ctx.direct_deps("meta_array") == {"array", "timestamp"}
    assert mock_ctx.all_deps("scalar1") == set()
    assert mock_ctx.all_deps("scalar2") == {"scalar1"}
    assert mock_ctx.all_deps("meta_array") == {"array", "timestamp", "scalar1", "scalar2"}
    # The exact order DAMNIT 0.4.0's ContextFile.ordered_vars() gives for this file.
    assert list(mock_ctx.vars) == ["scalar1", "empty_string", "timestamp", "string",
                                   "results", "image", "scalar2", "array", "meta_array"]


def test_promotion_of_proc_and_cluster_flows_downstream():
    ctx = load("""
        from damnit_ctx import Variable

        @Variable()
        def baz(run, bar: "var#bar"):
            return bar * 2

        @Variable(title="foo", data="proc", cluster=True)
        def foo(run):
            return 42

        @Variable(title="bar")
        def bar(run, foo: "var#foo"):
            return foo

        @Variable(title="other")
        def other(run):
            return 1
        """)
    assert [n for n, v in ctx.vars.items() if v.data is RunData.PROC] == ["foo", "bar", "baz"]
    assert [n for n, v in ctx.vars.items() if v.cluster] == ["foo", "bar", "baz"]
    assert ctx.vars["other"].data is RunData.RAW and ctx.vars["other"].cluster is False
    assert list(ctx.vars).index("foo") < list(ctx.vars).index("bar") < list(ctx.vars).index("baz")


def test_explicit_raw_depending_on_proc_is_an_error():
    with pytest.raises(ContextFileErrors) as e:
        load("""
            from damnit_ctx import Variable

            @Variable(title="foo", data="proc")
            def foo(run):
                return 42

            @Variable(title="bar", data="raw")
            def bar(run, foo: "var#foo"):
                return foo
            """)
    assert str(e.value) == (
        "context.py:8: variable 'bar': is triggered by migration of raw data (data='raw'), "
        "but depends on these Variables that require proc data: foo\n"
        "Remove data='raw' for bar or change it to data='proc'")


def test_all_problems_come_in_one_error():
    with pytest.raises(ContextFileErrors) as e:
        load("""
            from damnit_ctx import Variable

            @Variable(title="Foo", tags=["ok", ""])
            def foo(run, q: "mymdc#quux"):
                return 42

            @Variable(title="Foo", units="")
            def bar(run, x: "var#nope"):
                return 43
            """)
    assert e.value.problems == [
        "context.py:4: variable 'foo': tags=['ok', ''] (must be a non-empty string or an "
        "iterable of strings)",
        "context.py:4: variable 'foo': argument 'q' has an invalid MyMdC dependency: 'quux' "
        "(can be run_type, sample_name, techniques)",
        "context.py:8: variable 'bar': units='' (must be a non-empty string)",
        "context.py:8: variable 'bar': missing dependency 'var#nope'",
        "context.py:8: variable 'bar': these Variables have duplicate titles between them: "
        "foo, bar (title 'Foo')",
    ]


def test_valid_mymdc_and_meta_fields_load():
    ctx = load("""
        from damnit_ctx import Variable

        @Variable(title="foo")
        def foo(run, sample: "mymdc#sample_name", run_type: "mymdc#run_type",
                tech: "mymdc#techniques", p: "meta#proposal_path", n: "meta#run_number"):
            return 42

        @Variable(title='X')
        def X(run, foo: "var#foo"):
            return foo
        """)
    assert [(a.name, a.kind, a.key) for a in ctx.arguments("foo")] == [
        ("sample", "mymdc", "sample_name"), ("run_type", "mymdc", "run_type"),
        ("tech", "mymdc", "techniques"), ("p", "meta", "proposal_path"),
        ("n", "meta", "run_number")]


def test_glob_dependencies_expand_at_load():
    ctx = load("""
        from damnit_ctx import Variable

        @Variable()
        def xgm_sa1(run): return 1

        @Variable()
        def xgm_sa2(run): return 2

        @Variable()
        def xgm_all(run, parts: "var#xgm_*"): return parts

        @Variable()
        def bar(run): return 3

        @Variable()
        def pick(run, b: "var#b?r"): return b
        """)
    # A pattern never matches the variable that uses it.
    assert ctx.direct_deps("xgm_all") == {"xgm_sa1", "xgm_sa2"}
    assert ctx.direct_deps("pick") == {"bar"}
    assert [a.is_glob for a in ctx.arguments("xgm_all")] == [True]


def test_non_string_annotations_are_ignored():
    ctx = load("""
        from damnit_ctx import Variable

        @Variable()
        def foo(run, x: int = 3, y: "int" = 4):
            return x + y
        """)
    assert ctx.arguments("foo") == () and ctx.direct_deps("foo") == set()


def test_future_annotations_are_unquoted():
    ctx = load("""
        from __future__ import annotations
        from damnit_ctx import Variable

        @Variable()
        def foo(run):
            return 1

        @Variable()
        def bar(run, f: "var#foo", n: int = 2):
            return f * n
        """)
    assert ctx.direct_deps("bar") == {"foo"}


def test_selection_like_damnit(mock_ctx):
    def names(**kw):
        return set(mock_ctx.select(**kw).vars)

    assert names(run_data=RunData.RAW, match=["string"]) == {"string"}
    assert names(run_data=RunData.RAW, match=["scalar2", "timestamp"]) == {
        "scalar1", "scalar2", "timestamp"}
    # A proc variable is not run by a raw pass ...
    assert names(run_data=RunData.RAW, match=["meta_array"]) == set()
    # ... and a proc pass brings back its raw dependencies.
    assert names(run_data="proc", match=["meta_array"]) == {
        "scalar1", "scalar2", "timestamp", "array", "meta_array"}
    assert names(run_data=RunData.PROC) == {
        "scalar1", "scalar2", "timestamp", "array", "meta_array"}
    assert names() == set(mock_ctx.vars)
    # match is a case-insensitive substring of the title; --var names win over it.
    assert names(match=["SCALAR1"]) == {"scalar1"}
    assert names(variables=["array"], match=["Results"]) == {"array", "scalar1", "scalar2"}
    assert names(variables=["nope"]) == set()
    # Selection keeps the evaluation order.
    assert list(mock_ctx.select(run_data="proc").vars) == [
        "scalar1", "timestamp", "scalar2", "array", "meta_array"]


def test_selection_by_cluster_adds_dependencies_back():
    ctx = load("""
        from damnit_ctx import Variable

        @Variable()
        def light(run): return 1

        @Variable(cluster=True)
        def heavy(run, x: "var#light"): return x

        @Variable()
        def other(run): return 2
        """)
    assert set(ctx.select(cluster=False).vars) == {"light", "other"}
    assert set(ctx.select(cluster=True).vars) == {"light", "heavy"}


def test_code_version_follows_source_and_upstream():
    base = """
        from damnit_ctx import Variable

        @Variable(title="A")
        def a(run): return {a}

        @Variable(title="B")
        def b(run, a: "var#a"): return a + 1

        @Variable(title="C")
        def c(run): return 3
        """
    one, same, two = (load(base.replace("{a}", v)) for v in ("1", "1", "2"))
    v = {n: one.code_version(n) for n in one.vars}
    assert v == {n: same.code_version(n) for n in same.vars}
    assert two.code_version("a") != v["a"]
    assert two.code_version("b") != v["b"]          # upstream changed
    assert two.code_version("c") == v["c"]
    unit = load(base.replace("{a}", "1").replace('title="C"', 'title="C", units="mm"'))
    assert unit.code_version("c") != v["c"]         # the decorator is part of the source
    shown = load(base.replace("{a}", "1").replace(
        '@Variable(title="C")\n        def c(run): return 3',
        '@Variable(title="See", description="d", tags=["t"])\n'
        '        def c(run):\n            """Doc."""\n            return 3  # three'))
    assert shown.code_version("c") == v["c"]        # only how it is shown changed


def test_select_without_dependencies_keeps_only_the_chosen():
    ctx = load("""
        from damnit_ctx import Variable

        @Variable(title="A")
        def a(run): return 1

        @Variable(title="B")
        def b(run, a: "var#a"): return a + 1
        """)
    assert list(ctx.select(variables=["b"]).vars) == ["a", "b"]
    assert list(ctx.select(variables=["b"], with_deps=False).vars) == ["b"]


def test_describe_is_json_ready(mock_ctx):
    described = {d["name"]: d for d in json.loads(json.dumps(mock_ctx.describe()))}
    assert list(described) == list(mock_ctx.vars)
    assert described["scalar1"] == {
        "name": "scalar1", "title": "Scalar1", "description": None,
        "tags": ["scalar", "integer"], "data": "raw", "cluster": False, "transient": False,
        "units": None, "summary": None, "deps": [], "line": 6,
        "code_version": mock_ctx.code_version("scalar1")}
    assert described["meta_array"]["data"] == "proc"
    assert described["meta_array"]["deps"] == ["array", "timestamp"]
    assert described["meta_array"]["summary"] == "mean"
    assert described["empty_string"]["tags"] == ["text"]


def test_a_variable_bound_to_two_globals_is_one_variable():
    ctx = load("""
        from damnit_ctx import Variable

        @Variable(title="Foo")
        def foo(run): return 1

        alias = foo
        """)
    assert list(ctx.vars) == ["foo"]


def test_variables_imported_from_a_module_are_collected(tmp_path, monkeypatch):
    (tmp_path / "shared_vars.py").write_text(
        "from damnit_ctx import Variable\n\n@Variable(title='Shared')\ndef shared(run):\n"
        "    return 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = load("""
        from damnit_ctx import Variable
        from shared_vars import shared

        @Variable()
        def local(run, s: "var#shared"): return s
        """)
    assert list(ctx.vars) == ["shared", "local"]
    assert ctx.vars["shared"].location() == (str(tmp_path / "shared_vars.py"), 3)
