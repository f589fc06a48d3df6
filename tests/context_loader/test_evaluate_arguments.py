"""Evaluating one run: meta#/mymdc#/param# arguments, cells, summaries and units, results
that cannot be saved, printing, a variable breaking the process state, and every return
type the spec lists."""


from support.evaluation import data, run


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
