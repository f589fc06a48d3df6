"""Evaluating one run: values, defaults, Skip/None/error propagation with DAMNIT's texts,
globs and transient variables."""
import logging
import time

import numpy as np

from context_loader.contextfile import ContextFile
from context_loader.errors import DependencyError, Skip
from support.damnit_mock_context import MOCK_CODE
from support.evaluation import data, messages, run


def test_damnit_mock_context_values(caplog):
    t0 = time.time()
    with caplog.at_level(logging.ERROR):
        res = run(ContextFile.from_str(MOCK_CODE, "context.py"))
    assert caplog.records == [] and res.errors == {}
    assert t0 <= float(res.cells["start_time"].data) <= time.time()  # not a DataCollection
    assert res.cells["scalar1"].data == 42 and res.cells["scalar2"].data == 3.14
    assert res.cells["empty_string"].data == ""
    np.testing.assert_equal(res.cells["array"].data, [42, 3.14])
    np.testing.assert_equal(res.cells["meta_array"].data.data, [1000, 1234])
    assert res.cells["string"].data == ""        # meta#proposal_path of a non-run object
    assert res.cells["results"].data == "Failed"
    assert res.cells["image"].data.shape == (10, 10)
    assert res.cells["array"].summary == "size" and res.cells["meta_array"].summary == "mean"
    assert set(res.durations) == set(res.cells) - {"start_time"}


def test_none_result_and_none_dependencies():
    res = run(ContextFile.from_str(MOCK_CODE, "context.py"), run_number=2)
    # scalar1 returned None: present with no data; its dependents skip (no default).
    assert res.cells["scalar1"].data is None
    assert "scalar2" not in res.cells and "array" not in res.cells
    assert isinstance(res.errors["scalar2"], Skip)
    assert str(res.errors["scalar2"]) == "Dependencies returned no data:\n- 'scalar1'"
    # scalar2 has a (Skip) error, so array's error is the tree, as a Skip (DAMNIT's texts).
    assert type(res.errors["array"]) is Skip
    assert str(res.errors["array"]) == (
        "Skipped due to missing dependency:\n"
        "└ (scalar2) failed: Skip: Dependencies returned no data:\n"
        "   - 'scalar1'")
    assert str(res.errors["meta_array"]) == (
        "Skipped due to missing dependency:\n"
        "└ (array) failed: Skip: Skipped due to missing dependency:\n"
        "   └ (scalar2) failed: Skip: Dependencies returned no data:\n"
        "      - 'scalar1'")
    # Only variables that ran are timed.
    assert "scalar2" not in res.durations and "scalar1" in res.durations


def test_a_failure_skips_dependents_and_nothing_else(caplog):
    code = """
        @Variable(title="Foo")
        def foo(run):
            raise RuntimeError()

        @Variable(title="bar")
        def bar(run, foo: "var#foo"):
            return foo

        @Variable(title="independent")
        def independent(run):
            return 7
        """
    with caplog.at_level(logging.INFO):
        res = run(code)
    assert data(res) == {"independent": 7}
    assert type(res.errors["foo"]) is RuntimeError
    assert type(res.errors["bar"]) is DependencyError
    assert str(res.errors["bar"]) == ("Skipped due to missing dependency:\n"
                                      "└ (foo) failed: RuntimeError")
    logged = messages(caplog)
    assert ("ERROR", "Could not get data for foo") in logged
    assert ("WARNING", "Skipping bar because of missing dependencies: foo") in logged
    assert any(m.startswith("Computed independent in ") and m.endswith(" s")
               for _, m in logged)
    error_record = next(r for r in caplog.records if r.levelname == "ERROR")
    assert error_record.exc_info[0] is RuntimeError     # the traceback goes to the log


def test_defaults_replace_missing_results():
    res = run("""
        @Variable(title="foo")
        def foo(run): return None

        @Variable(title="boom")
        def boom(run): return 1 / 0

        @Variable(title="skipper")
        def skipper(run): raise Skip("not a scan")

        @Variable(title="bar")
        def bar(run, foo: "var#foo"=1, b: "var#boom"=10, s: "var#skipper"=100):
            return 41 + foo + b + s
        """)
    assert res.cells["bar"].data == 152
    assert "bar" not in res.errors


def test_skip_reason_and_skip_of_dependents(caplog):
    with caplog.at_level(logging.ERROR):
        res = run("""
            @Variable()
            def binned(run):
                raise Skip("Run is not a scan")

            @Variable()
            def after(run, b: "var#binned"):
                return b
            """)
    assert type(res.errors["binned"]) is Skip and str(res.errors["binned"]) == "Run is not a scan"
    # All dependency errors are Skip: the dependent is a Skip too, with the tree as text.
    assert type(res.errors["after"]) is Skip
    assert str(res.errors["after"]) == (
        "Skipped due to missing dependency:\n└ (binned) failed: Skip: Run is not a scan")
    assert messages(caplog) == [("ERROR", "Skipped binned: Run is not a scan")]


def test_dependency_tree_through_transient_variables():
    res = run("""
        @Variable(transient=True)
        def var3(run): return 1 / 0

        @Variable()
        def var5(run): raise NotImplementedError

        @Variable(transient=True)
        def var6(run, x: "var#var3"): return x

        @Variable()
        def var7(run, a: "var#var5", b: "var#var6"): return a + b
        """)
    # Transient errors are not stored, but they explain the dependent's error.
    assert set(res.errors) == {"var5", "var7"}
    assert str(res.errors["var7"]) == (
        "Skipped due to missing dependency:\n"
        "├ (var5) failed: NotImplementedError\n"
        "└ (var6) skipped\n"
        "   └ (var3) failed: ZeroDivisionError: division by zero")


def test_transient_results_feed_dependents_and_are_not_returned():
    res = run("""
        import numpy as np

        @Variable(transient=True)
        def var1(run, n: "meta#run_number"):
            return [np.arange(3), {"run": n}]        # any object: never stored

        @Variable(transient=True)
        def var2(run):
            return Cell(np.arange(4), summary="sum")  # the Cell's data is what feeds

        @Variable(summary="sum")
        def var3(run, a: "var#var1", b: "var#var2"):
            return a[0] + b[:3] + a[1]["run"]
        """, run_number=13)
    assert set(data(res)) == {"var3"}
    np.testing.assert_equal(res.cells["var3"].data, [13, 15, 17])


def test_glob_dependencies_give_dicts_of_what_succeeded():
    res = run("""
        @Variable()
        def var1(run): return 1

        @Variable()
        def var2(run): return 2

        @Variable()
        def var10(run): return 10

        @Variable()
        def var3(run): raise ValueError("bad")

        @Variable()
        def bar(run): return 42

        @Variable(transient=True)
        def q(run, v: "var#var?"): return v

        @Variable(transient=True)
        def star(run, v: "var#var*"): return v

        @Variable(transient=True)
        def single(run, v: "var#b?r"): return v

        @Variable()
        def report(run, q: "var#q", star: "var#star", single: "var#single",
                   lit: "var#bar", every: "var#*"):
            return repr((sorted(q.items()), sorted(star.items()), single, lit,
                         sorted(every)))
        """)
    q, star, single, lit, every = eval(str(res.cells["report"].data),
                                       {"array": np.array})
    assert q == [("var1", 1), ("var2", 2)]
    assert star == [("var1", 1), ("var10", 10), ("var2", 2)]
    assert single == {"bar": 42}          # a pattern gives a dict even with one match
    assert lit == 42
    # A pattern sees every result so far, transient ones and start_time included.
    assert every == ["bar", "q", "single", "star", "start_time", "var1", "var10", "var2"]


def test_glob_without_any_result_skips():
    res = run("""
        @Variable()
        def xgm_a(run): return None

        @Variable()
        def xgm_b(run): raise Skip("no XGM")

        @Variable()
        def total(run, parts: "var#xgm_*"): return sum(parts.values())
        """)
    assert type(res.errors["total"]) is Skip
    assert str(res.errors["total"]) == (
        "Skipped due to missing dependency:\n└ (xgm_b) failed: Skip: no XGM")
