"""What one step does for one run: evaluate the chosen variables, store them, log it.

No Dagster here. The variables are evaluated by :mod:`context_loader` — in a child forked
from this process or from a command's evaluation server (:mod:`.execution.fork_server`),
or, when the folder's ``context_python`` is another interpreter, by ``python -m
context_loader exec`` in it — into one HDF5 fragment, which
:func:`damnit_dagster.storage.writer.store_fragment` merges into the run's HDF5 file and
``runs.sqlite`` in one locked write. Everything the user's code prints, and a header per
evaluation, is appended to ``process_logs/r{R}-p{P}.out``.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from damnit_dagster.execution.describe import file_sha
from damnit_dagster.execution.limits import (
    Limits,
    has_results,
    keep_finished,
    name_memory_limit,
    process_end,
    report_path,
    take_report,
    wait_for_group,
)
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.leftovers import new_fragment
from damnit_dagster.storage.writer import store_fragment

#: Per-variable statuses reported by the runner.
OK, NONE, SKIPPED, ERROR = "ok", "none", "skipped", "error"


@dataclass
class RunOutcome:
    """The result of evaluating some variables for one run.

    ``variables`` maps name -> ``{"status", "error", "error_cls", "duration"}`` (the
    runner's report); ``summaries`` the stored summaries; ``error`` is set when the run
    could not be processed at all (then nothing was stored).
    """

    run: int
    variables: dict[str, dict] = field(default_factory=dict)
    summaries: dict = field(default_factory=dict)
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


_LOADING = threading.Lock()


@functools.lru_cache(maxsize=4)
def _loaded(path: str, sha: str | None, import_dir: str):
    from context_loader.contextfile import ContextFile
    from context_loader.runner import warm_up

    warm_up()
    ctx = ContextFile.from_path(path, import_dir)
    gc.freeze()  # children forked from here: their collector leaves these pages shared
    return ctx


def load_for_evaluation(context_path, damnit_dir):
    """The context file loaded in this warm process (modules in ``damnit_dir``
    importable from it), loaded once while its content is unchanged (a step covering
    many runs loads the user's code once, the first of its threads for all): children
    forked to evaluate runs inherit it, and the renderer's warm-up
    (:func:`context_loader.runner.warm_up`)."""
    with _LOADING:
        return _loaded(str(context_path), file_sha(context_path), str(damnit_dir))


def _die_with_parent() -> None:
    """In a forked child: be killed if the thread that forked it ends (the caller died),
    so that no evaluation runs on unwatched, past its time limit."""
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def evaluate_in_child(*, damnit_dir, context_path, proposal: int, run: int, data: str,
                      variables: list[str], fragment: str, log: str, settings: dict,
                      track=None) -> dict:
    """Evaluate in a child forked from this (warm) process, under the folder's limits;
    returns ``{"exit": the child's exit code (negative: killed by that signal),
    "timed_out": whether it reached the time limit}``.

    The child pins itself to ``noncluster_cpus`` cores and may allocate
    ``noncluster_mem`` on top of what it inherited (``RLIMIT_DATA``), so a greedy variable
    gets a MemoryError (its own error; the others are stored) and a crash of user code
    cannot take the caller down. It leads its own process group, killed when it ends or
    at the time limit (``slurm_time``), so no process it started outlives it. Its output
    is appended to the process log ``log``; its report goes next to ``fragment``
    (:func:`.execution.limits.report_path`). ``track(pid, alive)`` is told when the child
    runs (``alive`` True) and, before it is reaped, when it has ended.
    """
    from context_loader import runner

    ctx = load_for_evaluation(context_path, damnit_dir)
    limits = Limits.from_settings(settings)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.setpgid(0, 0)
            _die_with_parent()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a server ignores it
            with open(log, "a", encoding="utf-8", errors="replace") as log_file:
                os.dup2(log_file.fileno(), 1)
                os.dup2(log_file.fileno(), 2)
            sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
            sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
            logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            limits.apply_to_this_process(on_top_of_current=True)
            os.chdir(damnit_dir)  # the user's relative paths and local imports, as in DAMNIT
            os.umask(0)
            runner.execute(ctx, proposal, run, data, variables=tuple(variables),
                           fragment_path=str(fragment), report_path=report_path(Path(fragment)))
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    try:
        os.setpgid(pid, pid)   # the child does it too; whichever comes first
    except OSError:
        pass
    track = track or (lambda pid, alive: None)
    try:
        track(pid, True)
        timed_out = wait_for_group(pid, limits.time)
    finally:
        track(pid, False)
        _, wait_status = os.waitpid(pid, 0)
    return {"exit": os.waitstatus_to_exitcode(wait_status), "timed_out": timed_out}


def _copy_to_compute_log(log_file, start: int) -> None:
    """Show what an evaluation appended to the process log in Dagster's compute log too."""
    with open(log_file.name, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        sys.stderr.write(f.read())
    sys.stderr.flush()


def _exec_forked(damnit_dir, context_path, proposal, run, data, variables, fragment,
                 log_file, settings: dict, server=None) -> dict:
    """Evaluate in a child forked from a warm process: this one
    (:func:`evaluate_in_child`), or the command's evaluation ``server``
    (:class:`.execution.fork_server.EvaluationServer`); returns the child's report."""
    limits = Limits.from_settings(settings)   # a bad setting is the run's error, named here
    log_file.flush()
    start = os.fstat(log_file.fileno()).st_size
    request = dict(damnit_dir=str(damnit_dir), context_path=str(context_path),
                   proposal=int(proposal), run=int(run), data=data, variables=list(variables),
                   fragment=str(fragment), log=log_file.name, settings=settings)
    end = server.evaluate(**request) if server is not None else evaluate_in_child(**request)
    code, timed_out = end["exit"], end["timed_out"]
    report = take_report(report_path(Path(fragment)))
    if code != 0 or not has_results(report) or report.get("partial"):
        stopped = limits.timed_out() if timed_out else process_end(run, code, limits)
        kept = keep_finished(Path(fragment), report, stopped,
                             TimeoutError if timed_out else ChildProcessError)
        log_file.write(f"Run {run}: {stopped}"
                       f"{'; the variables it had finished are kept' if kept else ''}\n")
        log_file.flush()
        if kept is None:
            _copy_to_compute_log(log_file, start)
            if timed_out or code < 0:
                raise RuntimeError(f"the evaluation of run {run} {stopped}" if timed_out
                                   else stopped)
            detail = (report or {}).get("error") or f"exit status {code}"
            raise RuntimeError(f"evaluating run {run} failed: {detail}; see {log_file.name}")
        report = kept
    _copy_to_compute_log(log_file, start)
    name_memory_limit(report, Path(fragment), limits)
    return report


def _exec_in_slurm(damnit_dir, context_path, proposal, run, data, variables, fragment,
                   settings: dict) -> dict:
    """Evaluate in a Slurm job (``cluster=True`` variables): job ``r{R}-p{P}-damnit``,
    output appended to the run's process log, followed until it ends."""
    from damnit_dagster.execution.slurm import evaluate_in_slurm

    evaluation = evaluate_in_slurm(damnit_dir, proposal, run, data, variables=tuple(variables),
                                   cluster=None, settings=settings, context_path=context_path)
    os.replace(evaluation.fragment, fragment)  # stored (and removed) like a local fragment
    return evaluation.report


def _exec_other_python(damnit_dir, context_path, proposal, run, data, variables, fragment,
                       settings: dict) -> dict:
    """Evaluate with the folder's ``context_python`` (``python -m context_loader exec`` in
    that interpreter, under the same limits), output appended to the run's process log."""
    from damnit_dagster.execution.limits import evaluate_local

    evaluation = evaluate_local(damnit_dir, proposal, run, data, variables=tuple(variables),
                                cluster=None, settings=settings, context_path=context_path)
    os.replace(evaluation.fragment, fragment)  # stored (and removed) like a local fragment
    return evaluation.report


def evaluate_and_store(damnit_dir, proposal: int, run: int, context_path, variables, data: str,
                       *, context_python: str | None = None, settings: dict | None = None,
                       cluster: bool = False, server=None) -> RunOutcome:
    """Evaluate ``variables`` (names; their dependencies are added back) of ``run`` with
    trigger ``data`` (raw/proc/all), store the results, and report what happened.
    Evaluations in this interpreter are forked from ``server`` when given (see
    :mod:`.execution.fork_server`), else from this process.

    Never raises for a problem of the run or the user's code: that is ``outcome.error``.
    """
    paths = DamnitPaths(damnit_dir)
    paths.make_dirs()
    outcome = RunOutcome(run=int(run), hdf5_path=paths.run_file(proposal, run))
    t0 = time.perf_counter()
    fragment = new_fragment(paths, proposal, run)
    with paths.open_log(proposal, run) as log_file:
        log_file.write(f"----- {time.strftime('%Y-%m-%d %H:%M:%S')} processing r{run} p{proposal}"
                       f" data={data} variables={','.join(variables)} -----\n")
        log_file.flush()
        try:
            if cluster:
                report = _exec_in_slurm(paths.root, context_path, proposal, run, data,
                                        variables, fragment, settings or {})
            elif same_interpreter(context_python):
                report = _exec_forked(paths.root, context_path, proposal, run, data, variables,
                                      fragment, log_file, settings or {}, server)
            else:
                report = _exec_other_python(paths.root, context_path, proposal, run, data,
                                            variables, fragment,
                                            {**(settings or {}), "context_python": context_python})
            outcome.variables = report["variables"]
            outcome.data_opened = report.get("data_opened")
            outcome.proc_missing = list(report.get("proc_missing") or ())
            outcome.summaries = store_fragment(paths.root, proposal, run, fragment)
        except Exception as e:  # the run cannot be opened, the file cannot be written...
            outcome.error = f"{type(e).__name__}: {e}"
            log_file.write(f"Processing r{run} failed: {outcome.error}\n")
        finally:
            Path(fragment).unlink(missing_ok=True)
        outcome.duration = time.perf_counter() - t0
        log_file.write(f"----- r{run} done in {outcome.duration:.2f} s -----\n")
    return outcome
