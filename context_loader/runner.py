"""Load a context file, or evaluate one run with it, and hand the results over in files.

This is what ``python -m context_loader`` runs inside a user's ``context_python``: the
caller reads a JSON report and an HDF5 fragment, never pickles of user objects.
"""
from __future__ import annotations

import logging

from .contextfile import ContextFile
from .errors import ContextFileErrors, Skip
from .evaluate import evaluate_run, open_run, proc_available
from .fragment import warm_up as warm_up_fragment_writer, write_fragment
from .mymdc import MyMdcClient, proposal_client
from .variable import RunData

_log = logging.getLogger(__name__)


def warm_up() -> None:
    """Prepare this process to fork evaluations: load, once, what evaluating a run loads
    lazily (the fragment's netCDF writer, matplotlib's rendering, PNG encoding), so that
    each forked child does not. Never raises: whatever fails here stays lazy."""
    try:
        warm_up_fragment_writer()
    except Exception:
        _log.debug("warming up the fragment writer failed", exc_info=True)


class RunnerError(RuntimeError):
    """The run could not be evaluated at all (bad selection, run not found, ...)."""


def describe(path) -> dict:
    """``{"ok": True, "variables": [...]}`` (see :meth:`ContextFile.describe`), or
    ``{"ok": False, "problems": [...]}`` when the file does not load."""
    try:
        ctx = ContextFile.from_path(path)
    except ContextFileErrors as e:
        return {"ok": False, "problems": e.problems}
    return {"ok": True, "variables": ctx.describe()}


def execute(context, proposal: int, run: int, data="all", *, variables=(), match=(),
            cluster=None, fragment_path, mymdc: MyMdcClient | None = None,
            logger: logging.Logger | None = None) -> dict:
    """Evaluate the selected variables of one run and write them to ``fragment_path``.

    ``context`` is a path, or a :class:`ContextFile` already loaded (to evaluate many runs
    with one load). ``data`` is the trigger (raw/proc/all); ``variables``, ``match`` and
    ``cluster`` narrow the selection as :meth:`ContextFile.select`. ``mymdc`` answers
    ``mymdc#`` arguments; by default the proposal's MyMDC credentials are used, read only
    if a variable asks. If proc variables are
    selected but the run has no proc data, only the raw ones run (DAMNIT's rule) and the
    others are listed under ``proc_missing``. Returns the report::

        {"proposal", "run", "data_opened", "start_time", "proc_missing": [names],
         "variables": {name: {"status": "ok"|"none"|"skipped"|"error",
                              "error", "error_cls", "duration"}}}

    Raises :class:`ContextFileErrors` if the file does not load, :class:`RunnerError` if
    the selection names unknown variables or the run cannot be opened.
    """
    log = logger or _log
    ctx = context if isinstance(context, ContextFile) else ContextFile.from_path(context)
    unknown = [v for v in variables if v not in ctx.vars]
    if unknown:
        raise RunnerError(f"unknown variable(s) in the selection: {', '.join(unknown)}")
    run_data = RunData(data)
    selected = ctx.select(run_data, variables=variables, match=match, cluster=cluster)
    log.info("Using %d variables (of %d) from %s: %s", len(selected.vars), len(ctx.vars),
             ctx.path, ", ".join(selected.vars))

    proc_missing, open_as = [], run_data
    if run_data is not RunData.RAW and not proc_available(proposal, run):
        open_as = RunData.RAW  # nothing to merge: open the raw data only
        if any(v.data is RunData.PROC for v in selected.vars.values()):
            log.warning("Proc data is unavailable, only raw variables will be executed.")
            raw_only = selected.select(RunData.RAW)
            proc_missing = [n for n in selected.vars if n not in raw_only.vars]
            selected = raw_only

    try:
        run_obj, opened = open_run(proposal, run, open_as)
    except Exception as e:
        raise RunnerError(f"cannot open run {run} of proposal {proposal} "
                          f"({run_data.value} data): {type(e).__name__}: {e}") from e
    results = evaluate_run(selected, run_obj, run, proposal,
                           mymdc=mymdc or proposal_client(proposal), logger=log)
    write_fragment(fragment_path, results.cells, results.errors, provenance="context.py")

    report = {}
    for name, var in selected.vars.items():
        if var.transient:
            continue
        entry = {"status": None, "error": None, "error_cls": None,
                 "duration": results.durations.get(name)}
        error = results.errors.get(name)
        cell = results.cells.get(name)
        if error is not None:
            entry.update(status="skipped" if isinstance(error, Skip) else "error",
                         error=str(error), error_cls=type(error).__name__)
        elif cell is not None:
            empty = cell.data is None and cell.summary_value is None
            entry["status"] = "none" if empty else "ok"
        else:
            continue  # a param# value was missing: not run, as in DAMNIT
        report[name] = entry
    return {"proposal": proposal, "run": run, "data_opened": opened,
            "start_time": float(results.cells["start_time"].data),
            "proc_missing": proc_missing, "variables": report}
