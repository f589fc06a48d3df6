"""Every code example of the user documentation (shared/spec/backend.md) loads and is
evaluated on real mock runs, with the values or errors a user would see.

Examples are copied as written. Where one cannot run as printed, the test says why and
adds the least: an import the snippet leaves out, a stand-in for a user's own function,
or the mock run's device name.
"""
import textwrap

import numpy as np
import pytest

from context_loader.cells import Cell
from context_loader.contextfile import ContextFile
from context_loader.errors import ContextFileErrors, Skip
from context_loader.evaluate import evaluate_run, open_run
from context_loader.variable import RunData
from support.spec_examples import (
    CROSS_GROUP,
    FIRST_EXAMPLE,
    GROUP_XGM,
    INHERITANCE,
    NESTED,
    NESTED_AS_MEANT,
)


def load(code):
    return ContextFile.from_str(textwrap.dedent(code), "context.py")


def evaluate(ctx, mock_proposal, run=1):
    dc, _ = open_run(mock_proposal.proposal, run, RunData.ALL)
    return dc, evaluate_run(ctx, dc, run, mock_proposal.proposal)


FIRST = FIRST_EXAMPLE


def test_first_context_file(mock_proposal):
    from extra.components import XGM, XrayPulses

    ctx = load(FIRST)
    assert [(v.name, v.title, v.description, v.summary) for v in ctx.vars.values()] == [
        ("xgm_intensity", "XGM intensity [uJ]", "Mean XGM intensity per-train.", "mean"),
        ("pulses", "Pulses", "Number of pulses in the run.", "mean")]
    dc, res = evaluate(ctx, mock_proposal, run=2)
    assert res.errors == {}
    expected = XGM(dc).pulse_energy().mean("pulseIndex")
    np.testing.assert_allclose(res.cells["xgm_intensity"].data, expected)
    np.testing.assert_array_equal(res.cells["pulses"].data,
                                  XrayPulses(dc).pulse_counts().to_xarray())
    assert res.cells["xgm_intensity"].summary == "mean"


TAGS = '''
from damnit_ctx import Variable

@Variable(title="AGIPD data", tags=["detector", "agipd", "raw"])
def agipd_data(run):
    ...
'''

PROC = '''
from damnit_ctx import Variable

@Variable(title="Detector preview", data="proc")
def detector_preview(run):
    ...
'''


def test_tags_and_proc_examples(mock_proposal):
    tags, proc = load(TAGS), load(PROC)
    assert tags.vars["agipd_data"].tags == ["detector", "agipd", "raw"]
    assert proc.vars["detector_preview"].data is RunData.PROC
    assert [v.name for v in proc.select(RunData.RAW).vars.values()] == []
    # The body is `...`, so the function returns None: a cell without data, no error.
    _, res = evaluate(tags, mock_proposal)
    assert res.errors == {} and res.cells["agipd_data"].data is None


META = '''
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run, run_no: "meta#run_number"):
    # Just return the run number
    return run_no

@Variable(title="bar")
def bar(run, value: "var#foo"):
    # Now bar() will be executed after foo(), and we can use its return value
    return value * 2
'''

DEFAULT = '''
@Variable(title="baz")
def baz(run, value: "var#foo"=42):
    # This will return the result of foo() if foo() succeeded, otherwise 42
    return value
'''


def test_dependency_and_default_examples(mock_proposal):
    ctx = load(META + DEFAULT)
    assert list(ctx.vars) == ["foo", "bar", "baz"]
    _, res = evaluate(ctx, mock_proposal, run=3)
    assert {n: c.data for n, c in res.cells.items() if n != "start_time"} == {
        "foo": 3, "bar": 6, "baz": 3}
    # When foo fails, bar is not executed and baz gets its default.
    failing = load(META.replace("return run_no", "return run_no / 0") + DEFAULT)
    _, res = evaluate(failing, mock_proposal, run=3)
    assert res.cells["baz"].data == 42
    assert str(res.errors["bar"]) == (
        "Skipped due to missing dependency:\n└ (foo) failed: ZeroDivisionError: division by zero")


SKIP = '''
from damnit_ctx import Variable, Skip

@Variable()
def binned_by_scan_step(run):
    scan = Scantool(run)
    if not scan.active:
        raise Skip("Run is not a scan")
    ...
'''


def test_skip_example(mock_proposal):
    # The snippet uses Scantool without importing it; the import is added.
    ctx = load("from extra.components import Scantool\n" + SKIP)
    _, res = evaluate(ctx, mock_proposal, run=1)
    assert type(res.errors["binned_by_scan_step"]) is Skip
    assert str(res.errors["binned_by_scan_step"]) == "Run is not a scan"
    # On a scan run it goes on to `...` and returns None.
    _, res = evaluate(ctx, mock_proposal, run=mock_proposal.scan_runs[0])
    assert res.errors == {} and res.cells["binned_by_scan_step"].data is None




def test_group_example_as_written(mock_proposal):
    ctx = load(GROUP_XGM)
    assert {n: (v.title, v.tags) for n, v in ctx.vars.items()} == {
        "xgm_sa2.pulse_energy": ("XGM SA2/Pulse Energy", ("XGM",)),
        "xgm_sa2.corrected_energy": ("XGM SA2/Corrected Energy", ("XGM",)),
        "xgm_hed.pulse_energy": ("XGM HED/Pulse Energy", ("XGM",)),
        "xgm_hed.corrected_energy": ("XGM HED/Corrected Energy", ("XGM",))}
    assert ctx.direct_deps("xgm_sa2.corrected_energy") == {"xgm_sa2.pulse_energy"}
    # Neither device is in the mock run: the user sees which one, and dependents skip.
    _, res = evaluate(ctx, mock_proposal)
    message = ("Couldn't identify an XGM from 'SA2_XTD6_XGM/XGM/DOOCS'; please pass a "
               "valid device name, alias, or unique substring")
    assert str(res.errors["xgm_sa2.pulse_energy"]) == message
    assert str(res.errors["xgm_sa2.corrected_energy"]) == (
        "Skipped due to missing dependency:\n"
        f"└ (xgm_sa2.pulse_energy) failed: RuntimeError: {message}")


def test_group_example_on_the_mock_runs_device(mock_proposal):
    from extra.components import XGM

    from damnit_dagster.ops.mockdata import XGM_SOURCE

    ctx = load(GROUP_XGM.replace("SA2_XTD6_XGM/XGM/DOOCS", XGM_SOURCE))
    dc, res = evaluate(ctx, mock_proposal)
    energy = XGM(dc, XGM_SOURCE).pulse_energy()
    np.testing.assert_allclose(res.cells["xgm_sa2.pulse_energy"].data, energy)
    np.testing.assert_allclose(res.cells["xgm_sa2.corrected_energy"].data, energy + 1.1)
    assert res.cells["xgm_sa2.corrected_energy"].summary == "mean"
    assert set(res.errors) == {"xgm_hed.pulse_energy", "xgm_hed.corrected_energy"}




def test_cross_group_example(mock_proposal):
    ctx = load(GROUP_XGM + CROSS_GROUP)
    assert ctx.vars["instance.local_var"].title == "Group/local_var"
    order = list(ctx.vars)
    assert order.index("global_offset") < order.index("instance.local_var")
    assert order.index("xgm_hed.corrected_energy") < order.index("instance.another_var")
    _, res = evaluate(ctx, mock_proposal)
    assert res.cells["global_offset"].data == 42
    assert res.cells["instance.local_var"].data == 52
    assert str(res.errors["instance.another_var"]).startswith(  # xgm_hed is not in the run
        "Skipped due to missing dependency:\n└ (xgm_hed.corrected_energy) skipped\n"
        "   └ (xgm_hed.pulse_energy) failed: RuntimeError: Couldn't identify an XGM from "
        "'HED_XTD9_XGM/XGM/DOOCS'")




def test_nested_example_as_printed_is_a_clear_load_error():
    # As printed, `XGM(...)` is extra.components.XGM (imported above), not the group.
    with pytest.raises(ContextFileErrors) as e:
        load(GROUP_XGM + NESTED)
    line = (GROUP_XGM + NESTED).splitlines().index("mid = MIDDiagnostics(") + 2
    assert str(e.value).startswith(
        f"context.py:{line}: error while running the context file: TypeError: ")
    assert "'title'" in str(e.value).splitlines()[0]


def test_nested_example(mock_proposal):
    ctx = load(GROUP_XGM + NESTED_AS_MEANT)
    mid = {n: v for n, v in ctx.vars.items() if n.startswith("mid.")}
    assert mid["mid.agipd.n_photons"].title == "MID Diag/AGIPD/Photon Count"
    assert mid["mid.agipd.n_photons"].tags == ("Diag", "MID")
    assert ctx.direct_deps("mid.photons_per_microjoule") == {
        "mid.agipd.n_photons", "mid.xgm.corrected_energy"}
    _, res = evaluate(ctx, mock_proposal)
    # The mock run has no 'AGIPD1M' alias: the user sees that, and the ratio skips.
    assert str(res.errors["mid.agipd.n_photons"]) == (
        "'agipd1m' not known as alias for this data")
    assert "mid.photons_per_microjoule" in res.errors




def test_inheritance_example(mock_proposal):
    ctx = load("from damnit_ctx import Variable, Group\n" + INHERITANCE)
    assert list(ctx.vars) == ["detector.n_trains", "detector.photon_count"]
    assert ctx.vars["detector.photon_count"].data is RunData.PROC
    _, res = evaluate(ctx, mock_proposal)
    assert res.cells["detector.n_trains"].data == 100
    assert res.cells["detector.photon_count"].data == 1e6 / 100
    assert [*ctx.select(RunData.PROC).vars] == ["detector.n_trains", "detector.photon_count"]


CELL = '''
@Variable(title="Peaks")
def peaks(run):
    success, counts, data = computation(run)
    return Cell(
        data=data,
        summary_value=f"{counts} peaks detected" if success else "No peak",
        bold=True,
        background="#7cfc00" if success else "#ff0000"
    )
'''


def test_cell_example(mock_proposal):
    # `computation` is the user's own function: a stand-in "finds" 3 peaks in a long run.
    ctx = load(textwrap.dedent("""
        import numpy as np
        from damnit_ctx import Variable, Cell

        def computation(run):
            n = len(run.train_ids)
            return n > 50, 3, np.arange(n)
        """) + CELL)
    _, res = evaluate(ctx, mock_proposal)
    cell = res.cells["peaks"]
    assert isinstance(cell, Cell) and cell.summary_value == "3 peaks detected"
    assert cell.bold is True and list(cell.background) == [0x7c, 0xfc, 0x00]
    np.testing.assert_array_equal(cell.data, np.arange(100))


SLURM = '''
@Variable(title="Foo", cluster=True)
def foo(run):
    # some heavy computation ...
    return 42
'''


def test_slurm_example(mock_proposal):
    ctx = load("from damnit_ctx import Variable\n" + SLURM)
    assert ctx.vars["foo"].cluster is True
    assert list(ctx.select(cluster=False).vars) == []
    _, res = evaluate(ctx.select(cluster=True), mock_proposal)
    assert res.cells["foo"].data == 42
