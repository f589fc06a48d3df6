"""The module context files import: its names, the @Variable forms, DAMNIT's error texts."""
import subprocess
import sys
import textwrap

import pytest

import damnit_ctx
from context_loader import damnit_ctx as inner
from context_loader.cells import Cell
from context_loader.contextfile import ContextFile
from context_loader.errors import ContextFileErrors, DependencyError, GroupError, Skip
from context_loader.variable import RunData, Variable


def test_public_names_are_the_package_ones():
    assert sorted(damnit_ctx.__all__) == sorted(
        ["Variable", "Group", "Cell", "Skip", "RunData", "GroupError"])
    for name in damnit_ctx.__all__:
        assert getattr(damnit_ctx, name) is getattr(inner, name)
    assert damnit_ctx.Variable is Variable and damnit_ctx.Cell is Cell
    assert damnit_ctx.Skip is Skip and damnit_ctx.GroupError is GroupError
    assert [m.value for m in RunData] == ["raw", "proc", "all"]


def test_star_import_in_a_context_file():
    ctx = ContextFile.from_str(textwrap.dedent("""
        from damnit_ctx import *

        @Variable(title="A", data=RunData.RAW.value)
        def a(run):
            return Cell(1, summary_value="one")
        """))
    assert list(ctx.vars) == ["a"]


@pytest.mark.parametrize("form", ["@Variable", "@Variable()", '@Variable("Foo title")',
                                  '@Variable(title="Foo title")'])
def test_decorator_forms(form):
    ns = {"Variable": Variable}
    exec(f"{form}\ndef foo(run):\n    '''The foo.\n\n    More.'''\n    return 1\n", ns)
    var = ns["foo"]
    assert isinstance(var, Variable)
    assert var.name == "foo"
    assert var.title == ("foo" if "title" not in form else "Foo title")
    assert var.description == "The foo.\n\nMore."   # inspect.getdoc of the function
    assert var.data is RunData.RAW and var._data is None
    assert var.cluster is False and var.transient is False
    assert var.tags is None and var.units is None and var.summary is None


def test_variable_called_on_a_function():
    def bar(run, x: "var#foo", y: int = 3, z: "meta#run_number" = 0):
        return 1
    var = Variable(bar)
    assert var.name == "bar" and var.title == "bar" and var.description is None
    # Non-string annotations are ignored, not a crash.
    assert var.annotations() == {"x": "var#foo", "z": "meta#run_number"}
    assert [p.name for p in var.parameters()] == ["x", "y", "z"]


def test_arguments_are_kept_as_given():
    var = Variable(title="T", description="D", summary="mean", data="proc", cluster=True,
                   tags="xgm", transient=True, units="uJ")(lambda run: 1)
    assert (var.title, var.description, var.summary) == ("T", "D", "mean")
    assert var.data is RunData.PROC and var.cluster and var.transient
    assert var.tags == ("xgm",)          # a single string becomes a tuple
    assert var.units == "uJ"
    assert Variable(tags=["a", "b"]).tags == ["a", "b"]


def test_check_texts():
    def f(run):
        return 1
    good = Variable(title="F", tags=["a"], units="mm", summary="nanmax")(f)
    assert good.check() == []
    assert Variable(tags=["a", ""])(f).check() == [
        "tags=['a', ''] (must be a non-empty string or an iterable of strings)"]
    assert Variable(units="")(f).check() == ["units='' (must be a non-empty string)"]
    assert Variable(data="calibrated")(f).check() == [
        "data='calibrated' (can be 'raw'/'proc')"]
    assert Variable(summary="meen")(f).check() == [
        "summary='meen' (must name a numpy function, e.g. 'mean' or 'nanmax')"]
    assert Variable(cluster="yes")(f).check() == ["cluster='yes' (must be True or False)"]


def test_skip_and_group_error_are_plain_exceptions():
    assert issubclass(Skip, Exception) and not issubclass(Skip, RuntimeError)
    assert issubclass(GroupError, Exception)
    assert str(Skip("Run is not a scan")) == "Run is not a scan"


def test_dependency_error_text_is_damnits():
    inner_error = DependencyError([("var3", ZeroDivisionError("division by zero"))])
    err = DependencyError([("var5", NotImplementedError()), ("var6", inner_error)])
    assert str(err) == (
        "Skipped due to missing dependency:\n"
        "├ (var5) failed: NotImplementedError\n"
        "└ (var6) skipped\n"
        "   └ (var3) failed: ZeroDivisionError: division by zero")
    assert err.dep_errors[0][0] == "var5"
    assert isinstance(err, RuntimeError)


def test_dependency_error_multiline_messages_and_nesting():
    deep = DependencyError([("a", ValueError("line one\nline two")), ("b", Skip("no scan"))])
    err = DependencyError([("c", deep), ("d", KeyError("k"))])
    assert str(err) == (
        "Skipped due to missing dependency:\n"
        "├ (c) skipped\n"
        "│  ├ (a) failed: ValueError: line one\n"
        "│  │  line two\n"
        "│  └ (b) failed: Skip: no scan\n"
        "└ (d) failed: KeyError: 'k'")
    assert str(DependencyError([("e", DependencyError([]))])) == (
        "Skipped due to missing dependency:\n└ (e) skipped\n   <no details>")


def test_context_file_errors_join_problems():
    err = ContextFileErrors(["a.py:1: one", "a.py:2: two"], "a.py")
    assert str(err) == "a.py:1: one\na.py:2: two"
    assert err.problems == ["a.py:1: one", "a.py:2: two"] and err.path == "a.py"


def test_top_level_shim_imports_without_dagster(tmp_path):
    """`damnit_ctx` needs no Dagster: a fresh interpreter imports it with dagster blocked."""
    code = ("import sys; sys.modules['dagster'] = None\n"
            "import damnit_ctx; print(sorted(damnit_ctx.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str(sorted(damnit_ctx.__all__))
