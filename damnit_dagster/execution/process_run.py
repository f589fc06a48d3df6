"""Process one run: evaluate the chosen variables, store them, log it (what a Dagster
step does for each of its runs, without Dagster).

The variables are evaluated by an :class:`~.evaluator.Evaluator` — a child forked from a
warm process, the folder's ``context_python``, or a Slurm job — into one HDF5 fragment,
which :func:`damnit_dagster.storage.writer.store_fragment` merges into the run's HDF5 file
and ``runs.sqlite`` in one locked write. Everything the user's code prints, and a header
and summary per evaluation, is appended to ``process_logs/r{R}-p{P}.out``. DAMNIT's GUI
is told (:mod:`damnit_dagster.events.gui_updates`): processing started, the run's values
once committed, processing finished.
"""
from __future__ import annotations

import functools
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from damnit_dagster.events.gui_updates import GuiUpdates
from damnit_dagster.execution import process_log
from damnit_dagster.execution.evaluator import Evaluator, ExecutionError, Request, evaluate
from damnit_dagster.execution.forked import ForkedEvaluator
from damnit_dagster.execution.head_start import take_over
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.provenance import Versions, new_records, stored_records
from damnit_dagster.storage.writer import store_fragment

#: Per-variable statuses reported by the runner.
OK, NONE, SKIPPED, ERROR = "ok", "none", "skipped", "error"


@dataclass
class RunOutcome:
    """The result of evaluating some variables for one run.

    ``variables`` maps name -> ``{"status", "error", "error_cls", "duration"}`` (the
    runner's report); ``summaries`` the stored summaries; ``records`` their provenance
    records; ``error`` is set when the run could not be processed at all (then nothing
    was stored).
    """

    run: int
    variables: dict[str, dict] = field(default_factory=dict)
    summaries: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)
    data_opened: str | None = None
    proc_missing: list[str] = field(default_factory=list)
    hdf5_path: Path | None = None
    error: str | None = None
    duration: float = 0.0


def same_interpreter(python: str | None) -> bool:
    """True when ``python`` is empty or this very interpreter (evaluate in process)."""
    if not python:
        return True
    try:
        return os.path.samefile(python, sys.executable)
    except OSError:
        return False


def evaluator_for(*, cluster: bool, context_python: str | None, settings: dict,
                  server=None, workers=None) -> Evaluator:
    """Where a run's variables are evaluated: a Slurm job for ``cluster=True`` ones, else
    a child forked from this process (or ``server``; the thread's child of ``workers``, a
    :class:`.fork_worker.WorkerPool`, when given) when ``context_python`` is this
    interpreter, else that interpreter."""
    from damnit_dagster.execution.context_python import SubprocessEvaluator
    from damnit_dagster.execution.slurm import SlurmEvaluator

    if cluster:
        return SlurmEvaluator(settings)
    if same_interpreter(context_python):
        return ForkedEvaluator(settings, server, workers)
    return SubprocessEvaluator({**settings, "context_python": context_python})


def evaluate_and_store(damnit_dir, proposal: int, run: int, context_path, variables, data: str,
                       *, context_python: str | None = None, settings: dict | None = None,
                       cluster: bool = False, server=None,
                       processing_id: str | None = None, stored_inputs: bool = False,
                       versions: Versions | None = None,
                       evaluator: Evaluator | None = None,
                       head_start: bool = False, workers=None) -> RunOutcome:
    """Evaluate ``variables`` (names; their dependencies are added back) of ``run`` with
    trigger ``data`` (raw/proc/all), store the results, and report what happened. With
    ``stored_inputs``, the saved variables they depend on are read from the run's file
    instead (see ``context_loader.stored``). With ``versions``, each stored value gets its
    provenance record (:mod:`damnit_dagster.storage.provenance`), also in
    ``outcome.records``.
    Evaluations in this interpreter are forked from ``server`` when given (see
    :mod:`.fork_server`), else from this process; with ``workers`` (a
    :class:`.fork_worker.WorkerPool`), the thread's warm child of that pool evaluates
    them, after the runs before; ``evaluator`` overrides the choice (the run's task of a
    Slurm job array). With ``head_start`` (a live run), an evaluation of
    the same request started when the event arrived is taken over
    (:mod:`.head_start`).

    DAMNIT's GUI gets ``processing_state_set`` RUNNING (``processing_id``, by default a new
    one), ``run_values_updated`` after the store, and ``processing_finished`` in any case.

    Never raises for a problem of the run or the user's code: that is ``outcome.error``.
    """
    paths = DamnitPaths(damnit_dir)
    gui = gui_updates(paths, settings)
    processing_id = processing_id or str(uuid.uuid4())
    outcome = RunOutcome(run=int(run), hdf5_path=paths.run_file(proposal, run))
    t0 = time.perf_counter()
    run_file = paths.run_file(proposal, run)
    request = Request(paths.root, int(proposal), int(run), data, tuple(variables),
                      cluster=None, settings=settings or {}, context_path=Path(context_path),
                      inputs_from=run_file if stored_inputs else None)
    evaluation = None
    try:
        evaluator = evaluator or evaluator_for(cluster=cluster, context_python=context_python,
                                               settings=settings or {}, server=server,
                                               workers=workers)
        if head_start and isinstance(evaluator, ForkedEvaluator):
            evaluator = take_over(request, evaluator) or evaluator
        announce(gui, evaluator, processing_id, request)
        evaluation = evaluate(evaluator, request)
        report = evaluation.report
        outcome.variables = report["variables"]
        outcome.data_opened = report.get("data_opened")
        outcome.proc_missing = list(report.get("proc_missing") or ())
        if versions is not None:
            outcome.records = new_records(report, versions, stored_records(run_file))
        outcome.summaries = store_fragment(paths.root, proposal, run, evaluation.fragment,
                                           records=outcome.records)
        gui.run_values_updated(proposal, run, outcome.summaries)
    except Exception as e:  # the run cannot be opened, the file cannot be written...
        outcome.error = f"{type(e).__name__}: {e}"
        if not isinstance(e, ExecutionError):   # evaluate() has logged its own failures
            process_log.append(paths.root, proposal, run, f"Processing r{run} failed: "
                               f"{outcome.error}")
    finally:
        if evaluation is not None:
            evaluation.fragment.unlink(missing_ok=True)
        gui.processing_finished(processing_id)
    outcome.duration = time.perf_counter() - t0
    gui.flush()
    return outcome


def gui_updates(paths: DamnitPaths, settings: dict | None) -> GuiUpdates:
    """The folder's GUI messages, with ``settings`` or else the folder's own."""
    if not (settings and "db_id" in settings):
        try:
            with DamnitDB(paths.db_file) as db:
                settings = db.metameta.to_dict()
        except Exception:   # no database: nothing to tell
            settings = {}
    return GuiUpdates.for_folder(paths.root, settings)


def announce(gui: GuiUpdates, evaluator: Evaluator, processing_id: str, request: Request):
    """Processing has started: RUNNING here, or PENDING then RUNNING with the job for a
    Slurm evaluation (which tells its job's states through ``on_state``)."""
    if not gui.enabled:
        return
    state = functools.partial(gui.processing_state, processing_id, request.proposal,
                              request.run, request.data)
    if hasattr(evaluator, "on_state"):
        evaluator.on_state = state
    else:
        state("RUNNING")


def task_states(damnit_dir, settings: dict | None, proposal: int, data: str,
                processing_id_of):
    """``on_state(run, state, **job)`` for a :class:`~.slurm_array.SlurmArray`: tells
    DAMNIT's GUI a run's task state (``processing_id_of(run)`` names its processing)."""
    gui = gui_updates(DamnitPaths(damnit_dir), settings)

    def on_state(run, state, **job):
        if gui.enabled:
            gui.processing_state(processing_id_of(run), proposal, run, data, state, **job)
    return on_state

