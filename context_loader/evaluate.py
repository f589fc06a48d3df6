"""Evaluate the variables of a loaded context file for one run.

Variables run in dependency order; each gets its arguments from earlier results
(``var#``), the run (``meta#``), MyMDC (``mymdc#``) or parameters (``param#``). One
variable failing never stops the others; a variable whose dependencies have no result
(and no default) is skipped with DAMNIT's texts; ``sys.exit()`` or ``KeyboardInterrupt`` in
a variable is its error too. Nothing is printed: progress and
tracebacks go to a :class:`logging.Logger`.
"""
from __future__ import annotations

import fnmatch
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import extra_data
import numpy as np
from extra_data.exceptions import SourceNameError

from .cells import Cell
from .contextfile import ContextFile
from .errors import DependencyError, Skip
from .mymdc import MyMdcClient, NoMyMdcClient, fetch_field
from .variable import RunData

_log = logging.getLogger(__name__)


@dataclass
class Results:
    """What one run's evaluation produced.

    ``cells``: non-transient results by name, ``start_time`` included; a variable that
    returned None is present with ``data is None``. ``errors``: the exception of each
    non-transient variable that failed or was skipped. ``durations``: seconds per
    variable that was called.
    """
    cells: dict[str, Cell] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)


def open_run(proposal: int, run: int, run_data=RunData.ALL):
    """Open a run with ``extra_data.open_run`` (found through ``EXTRA_DATA_DATA_ROOT``):
    raw data only for a RAW evaluation, else raw and proc (proc preferred where both have
    a source). Returns ``(DataCollection, "raw" | "all")``."""
    data = "raw" if RunData(run_data) is RunData.RAW else "all"
    return extra_data.open_run(proposal, run, data=data), data


def start_time(run) -> float:
    """The run's start as a UTC epoch: its first train's timestamp, else (no trains, or no
    timestamps in old files) the mtime of its first raw file by name (first file if none
    is raw), as DAMNIT; ``time.time()`` for objects that are not EXtra-data runs."""
    if not isinstance(run, extra_data.DataCollection):
        return time.time()
    if len(run.train_ids):
        ts = run.select_trains(np.s_[:1]).train_timestamps()[0]
        if not np.isnan(ts):
            return np.datetime64(ts, "us").item().replace(tzinfo=UTC).timestamp()
    files = sorted(f.filename for f in run.files)
    raw = [f for f in files if "raw" in f]
    return Path((raw or files)[0]).stat().st_mtime if files else time.time()


def proposal_path(run):
    """``meta#proposal_path``: the proposal directory of a DataCollection, else ``""``."""
    if isinstance(run, extra_data.DataCollection):
        return Path(*Path(run.files[0].filename).parts[:-3])
    return ""


def evaluate_run(ctx: ContextFile, run, run_number: int, proposal: int, *,
                 mymdc: MyMdcClient | None = None, logger: logging.Logger | None = None,
                 params: dict | None = None, on_done=None, inputs: dict | None = None,
                 start: float | None = None) -> Results:
    """Evaluate every variable of ``ctx`` (already selected) on ``run``.

    ``run`` is what the functions receive (an EXtra-data DataCollection, or any object
    in tests). ``mymdc`` answers ``mymdc#`` arguments (default: fails clearly);
    ``params`` answers ``param#`` arguments (a variable missing one without a default is
    not run, as in DAMNIT). ``on_done(name, results)`` is called after each variable
    (``start_time`` first), with the results so far. ``inputs`` are values of variables
    not in ``ctx`` that its variables depend on (``None``: the variable returned None).
    ``start`` is the run's start time when already known (else read from ``run``).
    """
    evaluation = _Evaluation(ctx, run, run_number, proposal, mymdc or NoMyMdcClient(),
                             logger or _log, params or {}, on_done)
    evaluation.values.update({n: v for n, v in (inputs or {}).items() if v is not None})
    return evaluation.run(start)


def _as_variable_error(e: BaseException) -> BaseException:
    """``sys.exit()`` and ``KeyboardInterrupt`` in a variable are its error, with a text
    that says what happened (``str(SystemExit())`` is empty)."""
    if isinstance(e, SystemExit):
        return SystemExit(f"the variable called sys.exit({e.code!r})")
    if isinstance(e, KeyboardInterrupt):
        return KeyboardInterrupt("the variable was interrupted (KeyboardInterrupt)")
    return e


class _Evaluation:
    def __init__(self, ctx, run, run_number, proposal, mymdc, log, params, on_done):
        self.ctx, self.run_obj = ctx, run
        self.run_number, self.proposal = run_number, proposal
        self.mymdc, self.log, self.params = mymdc, log, params
        self.on_done = on_done or (lambda name, results: None)
        self.mymdc_cache: dict[str, object] = {}
        self.results = Results()
        self.values: dict[str, object] = {}  # non-None results that dependents can use

    def run(self, start: float | None) -> Results:
        t = start_time(self.run_obj) if start is None else start
        self.values["start_time"] = t
        self.results.cells["start_time"] = Cell(t)
        self.on_done("start_time", self.results)
        for name, var in self.ctx.vars.items():
            self._evaluate(name, var)
            self.on_done(name, self.results)
        for name, var in self.ctx.vars.items():
            if var.transient:
                self.results.errors.pop(name, None)
        return self.results

    def _evaluate(self, name, var):
        errors = self.results.errors
        t0 = time.perf_counter()
        try:
            kwargs, missing, missing_params = self._arguments(name)
            if missing:
                self.log.warning("Skipping %s because of missing dependencies: %s",
                                 name, ", ".join(missing))
                errors[name] = self._missing_error(missing)
                return
            if missing_params:
                self.log.warning("Skipping %s because of missing parameter values: %s",
                                 name, ", ".join(missing_params))
                return
            result = var.func(self.run_obj, **kwargs)
            if var.transient:
                data = result.data if isinstance(result, Cell) else result
            else:
                cell = result if isinstance(result, Cell) else Cell(result)
                if cell.summary is None:
                    cell.summary = var.summary
                if cell.units is None:
                    cell.units = var.units
                self.results.cells[name] = cell
                data = cell.data
        except (Exception, SystemExit, KeyboardInterrupt) as e:
            sys.stdout.flush()  # the user's prints come before the log line
            self.results.durations[name] = time.perf_counter() - t0
            if isinstance(e, Skip):
                self.log.error("Skipped %s: %s", name, e)
            else:
                self.log.error("Could not get data for %s", name, exc_info=True)
            errors[name] = _as_variable_error(e)
            return
        sys.stdout.flush()
        duration = self.results.durations[name] = time.perf_counter() - t0
        self.log.info("Computed %s in %.03f s", name, duration)
        if data is not None:
            self.values[name] = data

    def _arguments(self, name):
        kwargs, missing, missing_params = {}, [], []
        for arg in self.ctx.arguments(name):
            if arg.kind == "var":
                if arg.is_glob:
                    found = fnmatch.filter(self.values, arg.key)
                else:
                    found = [arg.key] if arg.key in self.values else []
                if found == [arg.key]:
                    kwargs[arg.name] = self.values[arg.key]
                elif found:
                    kwargs[arg.name] = {n: self.values[n] for n in found}
                elif not arg.has_default:
                    missing += fnmatch.filter(self.ctx.vars, arg.key) if arg.is_glob \
                        else [arg.key]
            elif arg.kind == "param":
                if arg.key in self.params:
                    kwargs[arg.name] = self.params[arg.key]
                elif not arg.has_default:
                    missing_params.append(arg.key)
            elif arg.kind == "mymdc":
                if arg.key not in self.mymdc_cache:
                    self.mymdc_cache[arg.key] = fetch_field(
                        self.mymdc, arg.key, self.proposal, self.run_number)
                kwargs[arg.name] = self.mymdc_cache[arg.key]
            elif arg.key == "run_number":
                kwargs[arg.name] = self.run_number
            elif arg.key == "proposal":
                kwargs[arg.name] = self.proposal
            else:  # proposal_path; other meta# fields are load errors
                kwargs[arg.name] = proposal_path(self.run_obj)
        return kwargs, missing, missing_params

    def _missing_error(self, missing) -> Exception:
        """DAMNIT's error for a variable whose dependencies have no result."""
        errors = self.results.errors
        dep_errors = [(dep, errors[dep]) for dep in missing if dep in errors]
        if not dep_errors:
            listed = "".join(f"\n- '{dep}'" for dep in missing)
            return Skip(f"Dependencies returned no data:{listed}")
        error = DependencyError(dep_errors)
        if all(isinstance(e, (Skip, SourceNameError)) for _, e in dep_errors):
            return Skip(str(error))
        return error
