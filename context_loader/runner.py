"""Load a context file, or evaluate one run with it, and hand the results over in files.

This is what ``python -m context_loader`` runs inside a user's ``context_python``: the
caller reads a JSON report and an HDF5 fragment, never pickles of user objects.
"""
from __future__ import annotations

import logging
import os
import socket
import time

from .contextfile import ContextFile
from .errors import ContextFileErrors, Skip
from .evaluate import evaluate_run, open_run
from .fragment import FragmentWriter
from .fragment import warm_up as warm_up_fragment_writer
from .mymdc import MyMdcClient, proposal_client
from .progress import append_progress, progress_path, write_json
from .proposal_paths import proc_available
from .run_use import reads_run
from .stored import plan, stored_start_time
from .stored import warm_up as warm_up_stored_reader
from .variable import RunData

_log = logging.getLogger(__name__)


def warm_up() -> None:
    """Prepare this process to fork evaluations: load, once, what evaluating a run loads
    lazily (the fragment's netCDF writer, matplotlib's rendering, PNG encoding, the
    netCDF reader of stored inputs), so that each forked child does not. Never raises:
    whatever fails here stays lazy."""
    for part in (warm_up_fragment_writer, warm_up_stored_reader):
        try:
            part()
        except Exception:
            _log.debug("warming up %s failed", part.__name__, exc_info=True)


class RunnerError(RuntimeError):
    """The run could not be evaluated at all (bad selection, run not found, ...)."""


def describe(path, import_dir=None) -> dict:
    """``{"ok": True, "variables": [...]}`` (see :meth:`ContextFile.describe`), or
    ``{"ok": False, "problems": [...]}`` when the file does not load. Modules in
    ``import_dir`` (default: the file's folder) are importable from it."""
    try:
        ctx = ContextFile.from_path(path, import_dir)
    except ContextFileErrors as e:
        return {"ok": False, "problems": e.problems}
    return {"ok": True, "variables": ctx.describe()}


def execute(context, proposal: int, run: int, data="all", *, variables=(), match=(),
            cluster=None, fragment_path, report_path=None, import_dir=None,
            mymdc: MyMdcClient | None = None, logger: logging.Logger | None = None,
            inputs_from=None) -> dict:
    """Evaluate the selected variables of one run and write them to ``fragment_path``.

    ``context`` is a path (its neighbour modules, or those in ``import_dir``, importable),
    or a :class:`ContextFile` already loaded (to evaluate many runs with one load).
    ``data`` is the trigger (raw/proc/all); ``variables``, ``match`` and
    ``cluster`` narrow the selection as :meth:`ContextFile.select`. With ``inputs_from``
    (the run's HDF5 file), only the selected variables are computed and stored: the saved
    variables they depend on are read from that file where they can be
    (:mod:`.stored`). ``mymdc`` answers
    ``mymdc#`` arguments; by default the proposal's MyMDC credentials are used, read only
    if a variable asks. If proc variables are
    selected but the run has no proc data, only the raw ones run (DAMNIT's rule) and the
    others are listed under ``proc_missing``. Returns the report::

        {"proposal", "run", "data_opened", "start_time", "duration" (seconds),
         "proc_missing": [names],
         "variables": {name: {"status": "ok"|"none"|"skipped"|"error",
                              "error", "error_cls", "duration"}}}

    Each variable is written to the fragment as soon as it is computed. With
    ``report_path``, the report is written there too at the end, and meanwhile a line per
    variable is appended to :func:`.progress.progress_path`, so that if this process dies, what it
    had computed is known (:func:`.progress.read_progress`) and in the partial fragment
    (:func:`context_loader.fragment.complete_partial`).

    Raises :class:`ContextFileErrors` if the file does not load, :class:`RunnerError` if
    the selection names unknown variables or the run cannot be opened.
    """
    log = logger or _log
    started = time.perf_counter()
    ctx = context if isinstance(context, ContextFile) else ContextFile.from_path(context,
                                                                                 import_dir)
    unknown = [v for v in variables if v not in ctx.vars]
    if unknown:
        raise RunnerError(f"unknown variable(s) in the selection: {', '.join(unknown)}")
    run_data = RunData(data)
    selected = ctx.select(run_data, variables=variables, match=match, cluster=cluster,
                          with_deps=inputs_from is None)
    stored = None
    if inputs_from is not None:
        stored = plan(ctx, selected.vars, inputs_from)
        selected = stored.compute
        log.info("Reading %d stored inputs from %s; computing again (not stored): %s",
                 len(stored.values), inputs_from, ", ".join(sorted(stored.again)) or "none")
    again = stored.again if stored is not None else set()
    log.info("Using %d variables (of %d) from %s: %s", len(selected.vars), len(ctx.vars),
             ctx.path, ", ".join(selected.vars))

    proc_missing, open_as = [], run_data
    if run_data is not RunData.RAW and not proc_available(proposal, run):
        open_as = RunData.RAW  # nothing to merge: open the raw data only
        if any(v.data is RunData.PROC for v in selected.vars.values()):
            log.warning("Proc data is unavailable, only raw variables will be executed.")
            raw_only = selected.select(RunData.RAW)
            proc_missing = [n for n in selected.vars if n not in raw_only.vars and n not in again]
            selected = raw_only

    known_start = None
    if stored is not None and not any(reads_run(v.func) for v in selected.vars.values()):
        known_start = stored_start_time(inputs_from)
    if known_start is not None:
        run_obj, opened = None, "raw" if open_as is RunData.RAW else "all"
        log.info("No variable to compute reads the run: not opening it")
    else:
        try:
            run_obj, opened = open_run(proposal, run, open_as)
        except Exception as e:
            raise RunnerError(f"cannot open run {run} of proposal {proposal} "
                              f"({run_data.value} data): {type(e).__name__}: {e}") from e

    report = {"proposal": proposal, "run": run, "data_opened": opened, "start_time": None,
              "proc_missing": proc_missing, "host": socket.gethostname(), "variables": {}}
    progress = None
    if report_path is not None:
        progress = open(progress_path(report_path), "w", encoding="utf-8")
        append_progress(progress, {**report, "order": list(selected.vars),
                           "transient": [n for n, v in selected.vars.items()
                                         if v.transient or n in again]})
    writer = FragmentWriter(fragment_path, provenance="context.py")

    def on_done(name, results):
        var = selected.vars.get(name)
        if name in again:
            return
        if var is None or not var.transient:
            if name in results.errors:
                writer.add(name, error=results.errors[name])
            elif name in results.cells:
                writer.add(name, cell=results.cells[name])
        if var is None:
            report["start_time"] = float(results.cells["start_time"].data)
            line = {"start_time": report["start_time"]}
        else:
            entry = _report_entry(var, name, results)
            if entry is not None:
                report["variables"][name] = entry
            line = {"done": name, "entry": entry}
        if progress is not None:
            append_progress(progress, line)

    try:
        evaluate_run(selected, run_obj, run, proposal, mymdc=mymdc or proposal_client(proposal),
                     logger=log, on_done=on_done, start=known_start,
                     inputs=stored.values if stored is not None else None)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    finally:
        if progress is not None:
            progress.close()
    report["duration"] = time.perf_counter() - started
    if report_path is not None:
        write_json(report_path, report)
        os.unlink(progress.name)
    return report


def _report_entry(var, name, results) -> dict | None:
    """A variable's entry in the report; None when it is not reported (transient, or not
    run for a missing ``param#`` value, as in DAMNIT)."""
    if var.transient:
        return None
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
        return None
    return entry
