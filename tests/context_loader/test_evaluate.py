"""Evaluating one run: values, defaults, Skip/None/error propagation with DAMNIT's texts,
globs, meta#/mymdc#/param#, transient variables, start_time, and real mock runs."""
import logging
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from context_loader.contextfile import ContextFile
from context_loader.errors import DependencyError, Skip
from context_loader.evaluate import evaluate_run, open_run, proc_available, start_time
from context_loader.variable import RunData
from support.damnit_mock_context import MOCK_CODE


class FakeRun:
    """Stands in for a DataCollection where the variables do not read the run."""


def load(code):
    return ContextFile.from_str("from damnit_ctx import *\n" + textwrap.dedent(code),
                                "context.py")


def run(code_or_ctx, run_number=1000, proposal=1234, **kw):
    ctx = load(code_or_ctx) if isinstance(code_or_ctx, str) else code_or_ctx
    return evaluate_run(ctx, FakeRun(), run_number, proposal, **kw)


def data(results):
    return {n: c.data for n, c in results.cells.items() if n != "start_time"}


def messages(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records]


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
    assert str(res.errors["bar"]) == "Skipped due to missing dependency:\n└ (foo) failed: RuntimeError"
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


def test_meta_arguments():
    res = run("""
        @Variable()
        def meta(run, n: "meta#run_number", p: "meta#proposal", path: "meta#proposal_path"):
            return f"{n} {p} {path!r}"
        """, run_number=7, proposal=4321)
    assert res.cells["meta"].data == "7 4321 ''"


class FakeMyMdc:
    def __init__(self):
        self.calls = []

    def sample_name(self, proposal, run):
        self.calls.append(("sample_name", proposal, run))
        return "mithril"

    def run_type(self, proposal, run):
        self.calls.append(("run_type", proposal, run))
        return "alchemy"

    def techniques(self, proposal, run):
        self.calls.append(("techniques", proposal, run))
        return [{"identifier": "PaNET01168", "name": "SFX"},
                {"identifier": "PaNET01188", "name": "SAXS"}]


MYMDC_CODE = """
    @Variable(title="Sample")
    def sample(run, x: "mymdc#sample_name"):
        return x

    @Variable(title="Run type")
    def run_type(run, x: "mymdc#run_type"):
        return x

    @Variable(title="Run Techniques")
    def techniques(run, x: "mymdc#techniques"):
        return ", ".join(t["name"] for t in x)

    @Variable(title="Sample again")
    def sample2(run, x: "mymdc#sample_name"):
        return x.upper()

    @Variable(title="Plain")
    def plain(run):
        return 1
    """


def test_mymdc_fields_come_from_the_client_once_per_run():
    client = FakeMyMdc()
    res = run(MYMDC_CODE, run_number=5, proposal=1234, mymdc=client)
    assert data(res) == {"sample": "mithril", "run_type": "alchemy",
                         "techniques": "SFX, SAXS", "sample2": "MITHRIL", "plain": 1}
    assert sorted(client.calls) == [("run_type", 1234, 5), ("sample_name", 1234, 5),
                                    ("techniques", 1234, 5)]


def test_without_mymdc_client_only_those_variables_fail():
    res = run(MYMDC_CODE)
    assert set(res.errors) == {"sample", "run_type", "techniques", "sample2"}
    assert all(type(e) is RuntimeError and str(e) == "no MyMDC client configured"
               for e in res.errors.values())
    assert data(res) == {"plain": 1}


def test_param_arguments_as_damnit():
    code = """
        @Variable()
        def needs(run, x: "param#threshold"): return x

        @Variable()
        def has_default(run, x: "param#threshold" = 3): return x
        """
    res = run(code)
    # A missing parameter without default: not run, and no error recorded.
    assert data(res) == {"has_default": 3} and res.errors == {}
    assert data(run(code, params={"threshold": 9})) == {"needs": 9, "has_default": 9}


def test_cells_summary_and_units_precedence():
    res = run("""
        import numpy as np
        import xarray as xr

        @Variable(summary="max", units="V")
        def own(run): return Cell(np.arange(10), summary="sum", units="mV")

        @Variable(summary="max", units="V")
        def from_var(run): return np.arange(10)

        @Variable(units="V")
        def from_attrs(run): return xr.DataArray([1.0, 2.0], attrs={"units": "uJ"})

        @Variable(units="V")
        def cell_over_attrs(run):
            return Cell(xr.DataArray([1.0], attrs={"units": "uJ"}), units="mJ")

        @Variable()
        def preview(run):
            return Cell(None, summary_value=7, bold=True, background="#ff0000")
        """)
    c = res.cells
    assert (c["own"].summary, c["own"].units) == ("sum", "mV")
    assert (c["from_var"].summary, c["from_var"].units) == ("max", "V")
    assert c["from_attrs"].units == "uJ" and c["cell_over_attrs"].units == "mJ"
    assert c["preview"].data is None and c["preview"].summary_value == 7
    assert c["preview"].bold is True


def test_unsavable_results_fail_alone():
    res = run("""
        import numpy as np

        @Variable()
        def obj(run): return object()

        @Variable()
        def stamp(run): return np.datetime64("2025-01-01")

        @Variable()
        def strings(run): return ["a", "b"]

        @Variable()
        def mapping(run): return {"a": 1}

        @Variable(transient=True)
        def anything(run): return object()

        @Variable()
        def fine(run, a: "var#anything"): return 1
        """)
    assert {n: type(e) for n, e in res.errors.items()} == {
        "obj": TypeError, "stamp": TypeError, "strings": TypeError, "mapping": TypeError}
    assert "cannot be saved" in str(res.errors["obj"])
    assert data(res) == {"fine": 1}


def test_evaluation_does_not_print(capsys):
    run("""
        @Variable()
        def foo(run): raise ValueError("x")

        @Variable()
        def bar(run, f: "var#foo"): return f
        """)
    assert capsys.readouterr() == ("", "")


def test_user_prints_are_not_swallowed(capsys):
    run("""
        @Variable()
        def talk(run):
            print("hello from the context")
            return 1
        """)
    assert capsys.readouterr().out == "hello from the context\n"


def test_a_variable_that_breaks_the_process_state_does_not_stop_later_ones():
    res = run("""
        @Variable()
        def first(run): raise KeyError("missing key")

        @Variable()
        def second(run): return 2
        """)
    assert data(res) == {"second": 2} and str(res.errors["first"]) == "'missing key'"


# -- real runs -----------------------------------------------------------------------


def test_open_run_and_start_time_of_mock_runs(mock_proposal):
    from damnit_dagster.ops.mockdata import run_design

    dc, opened = open_run(mock_proposal.proposal, 1, RunData.RAW)
    assert opened == "raw"
    assert all("/raw/" in f.filename for f in dc.files)
    assert start_time(dc) == run_design(1).start_time.timestamp()
    dc, opened = open_run(mock_proposal.proposal, 1, RunData.PROC)
    assert opened == "all" and any("/proc/" in f.filename for f in dc.files)
    assert proc_available(mock_proposal.proposal, 1)
    assert not proc_available(mock_proposal.proposal, 4)
    assert not proc_available(mock_proposal.proposal, 99)
    with pytest.raises(FileNotFoundError):
        open_run(mock_proposal.proposal, 99, RunData.RAW)


def test_evaluate_a_mock_run(mock_proposal):
    from damnit_dagster.ops.mockdata import XGM_SOURCE, run_design

    ctx = load(f"""
        @Variable(title="Trains")
        def n_trains(run):
            return len(run.train_ids)

        @Variable(title="Path")
        def path(run, p: "meta#proposal_path"):
            return str(p)

        @Variable(title="Photon flux", summary="mean")
        def flux(run):
            return run["{XGM_SOURCE}", "pulseEnergy.photonFlux"].xarray()

        @Variable(title="Missing source")
        def missing(run):
            return run["NO/SUCH/DEVICE", "x"].ndarray()

        @Variable(title="After missing")
        def after(run, m: "var#missing"):
            return m
        """)
    dc, _ = open_run(mock_proposal.proposal, 2, RunData.RAW)
    res = evaluate_run(ctx, dc, 2, mock_proposal.proposal)
    assert res.cells["n_trains"].data == 100
    assert res.cells["path"].data == str(mock_proposal.path)
    assert float(res.cells["start_time"].data) == run_design(2).start_time.timestamp()
    assert res.cells["flux"].data.dims == ("trainId",)
    assert type(res.errors["missing"]).__name__ == "SourceNameError"
    # A dependency failing for a missing source counts as Skip (DAMNIT 0.4.0).
    assert type(res.errors["after"]) is Skip
    assert str(res.errors["after"]).startswith(
        "Skipped due to missing dependency:\n└ (missing) failed: SourceNameError: ")


def test_start_time_of_a_run_without_trains_is_its_first_raw_files_mtime(mock_proposal):
    dc, _ = open_run(mock_proposal.proposal, 1, RunData.ALL)
    empty = dc.select_trains(np.s_[0:0])
    raw = sorted(f.filename for f in empty.files if "/raw/" in f.filename)
    assert raw and start_time(empty) == Path(raw[0]).stat().st_mtime


def test_every_return_type_the_spec_lists_is_accepted():
    res = run("""
        import numpy as np
        import xarray as xr
        import matplotlib.pyplot as plt
        import plotly.express as px

        @Variable()
        def scalar(run): return 3.5

        @Variable()
        def scalars(run): return [1, 2, 3]

        @Variable()
        def image(run): return np.ones((4, 5))

        @Variable()
        def cube(run): return np.zeros((2, 3, 4))

        @Variable()
        def dataarray(run): return xr.DataArray(np.arange(3.0), dims=["trainId"])

        @Variable()
        def dataset(run): return xr.Dataset({"a": ("x", [1, 2])})

        @Variable()
        def figure(run):
            fig, ax = plt.subplots()
            ax.plot([1, 2])
            return fig

        @Variable()
        def axes(run):
            fig, ax = plt.subplots()
            return ax

        @Variable()
        def plotly(run): return px.bar(x=["a", "b"], y=[1, 3])

        @Variable()
        def text(run): return "hello"

        @Variable()
        def nothing(run): return None
        """)
    import matplotlib.figure
    import xarray as xr

    assert res.errors == {}
    c = res.cells
    assert c["scalar"].data == 3.5 and list(c["scalars"].data) == [1, 2, 3]
    assert c["image"].data.shape == (4, 5) and c["cube"].data.shape == (2, 3, 4)
    assert isinstance(c["dataarray"].data, xr.DataArray)
    assert isinstance(c["dataset"].data, xr.Dataset)
    assert isinstance(c["figure"].data, matplotlib.figure.Figure)
    assert isinstance(c["axes"].data, matplotlib.figure.Figure)   # Axes -> their Figure
    assert type(c["plotly"].data).__name__ == "Figure"
    assert c["text"].data == "hello" and c["nothing"].data is None
