"""One evaluation of a run's variables, wherever it runs.

An :class:`Evaluator` starts the runner (``context_loader``) somewhere and tells how it
ended: :class:`~.forked.ForkedEvaluator` in a child forked from a warm process,
:class:`~.context_python.SubprocessEvaluator` with the folder's ``context_python``,
:class:`~.slurm.SlurmEvaluator` in a Slurm job, :class:`~.slurm_array.ArrayTask` in a
task of a Slurm job array. :func:`evaluate` does the rest the same
way for all of them: the fragment and report files, the process log's header and summary,
reading the report, keeping what a runner that died had finished, naming the memory
limit, and the text of a failure.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from damnit_dagster.execution import process_log
from damnit_dagster.execution.limits import Limits
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.leftovers import new_fragment


class ExecutionError(RuntimeError):
    """An evaluation failed as a whole (nothing to store); the message says why and
    where the log is."""


@dataclass(frozen=True)
class Request:
    """What to evaluate: the variables of one run selected by ``data`` (raw/proc/all),
    ``variables``/``match`` and ``cluster`` (see ``ContextFile.select``), with the folder's
    ``settings`` (its ``metameta``) and context file (default: ``context.py``). With
    ``inputs_from`` (the run's file), only the selected variables are computed, the saved
    ones they depend on read from it (``context_loader.stored``; Slurm jobs ignore it)."""

    damnit_dir: Path
    proposal: int
    run: int
    data: str = "all"
    variables: tuple[str, ...] = ()
    match: tuple[str, ...] = ()
    cluster: bool | None = False
    settings: dict = field(default_factory=dict)
    context_path: Path | None = None
    inputs_from: Path | None = None

    @property
    def context_file(self) -> Path:
        return Path(self.context_path or DamnitPaths(self.damnit_dir).context_file).absolute()


@dataclass(frozen=True)
class Ended:
    """How the runner ended: ``ok`` (exit status 0, job completed), else ``stopped`` says
    how, in words that name the limit it reached; ``hint`` adds to a failure's text (for
    example that the output shows an allocation refused); ``error_type`` is the
    :class:`ExecutionError` a failure raises; ``duration`` the evaluation's seconds when
    it ran before :meth:`Evaluator.run` was called (a task of a Slurm job array);
    ``keep_partial=False`` stores nothing of a run that did not finish (its earlier values
    stay), where by default the variables it had finished are kept."""

    ok: bool
    stopped: str = ""
    timed_out: bool = False
    hint: str = ""
    error_type: Callable[[str], ExecutionError] = ExecutionError
    duration: float | None = None
    keep_partial: bool = True


class Evaluator(Protocol):
    """Runs the runner for a :class:`Request`, writing ``fragment`` and ``report``."""

    #: The limits the runner is held to, named in errors (None: the evaluator's own, as
    #: a Slurm job's).
    limits: Limits | None

    def header(self, request: Request) -> str | None:
        """The process log's header of this evaluation; None when the runner writes its
        own (a Slurm job names its job id)."""

    def fragment_for(self, request: Request) -> Path | None:
        """The fragment the runner writes when the evaluator chose it beforehand (a task
        of a Slurm job array); None for a fresh one."""

    def run(self, request: Request, *, fragment: Path, report: Path, log: Path,
            echo) -> Ended:
        """Evaluate; copy the runner's output to ``echo`` (a text stream or None)."""


@dataclass
class Evaluation:
    """What an evaluation produced: the runner's report (see ``context_loader.runner``)
    and the fragment to store with ``damnit_dagster.storage.writer.store_fragment``."""

    report: dict
    fragment: Path
    log: Path
    duration: float


def report_path(fragment: Path) -> Path:
    """Where the runner writes its report for ``fragment``."""
    return Path(str(fragment) + ".report.json")


def evaluate(evaluator: Evaluator, request: Request, *, echo=True) -> Evaluation:
    """Evaluate ``request`` with ``evaluator`` into a fresh fragment in ``extracted_data/``
    (shared storage, so a Slurm job on another node writes it too).

    The output goes to ``process_logs/r{R}-p{P}.out`` and, unless ``echo`` is None, to
    ``echo`` (default ``sys.stderr``: Dagster's compute log). Returns the
    :class:`Evaluation`: when the runner died or hit the time limit, what it had finished
    and an error for each of the rest. Raises :class:`ExecutionError` (or the evaluator's
    subclass) when there is nothing to keep: the context file does not load, the run
    cannot be opened, the process died before evaluating.
    """
    paths = DamnitPaths(request.damnit_dir)
    paths.make_dirs()
    proposal, run = request.proposal, request.run
    echo = process_log.resolve_echo(echo)
    fragment = evaluator.fragment_for(request) or new_fragment(paths, proposal, run)
    report_file = report_path(fragment)
    header = evaluator.header(request)
    log = (process_log.append(paths.root, proposal, run, f"\n{header}", echo=echo)
           if header is not None else process_log.ensure_log(paths.root, proposal, run))
    t0 = time.monotonic()
    try:
        ended = evaluator.run(request, fragment=fragment, report=report_file, log=log,
                              echo=echo)
    except BaseException as e:
        discard(fragment, report_file)
        if isinstance(e, Exception):
            process_log.append(paths.root, proposal, run, f"Processing r{run} failed: {e}")
        raise
    duration = ended.duration if ended.duration is not None else time.monotonic() - t0
    report = take_report(report_file)
    if not ended.ok or not has_results(report) or report.get("partial"):
        kept = (keep_finished(fragment, report, ended.stopped,
                              TimeoutError if ended.timed_out else ChildProcessError)
                if ended.keep_partial else discard_partial(fragment))
        if kept is None:
            discard(fragment)
            reason = failure(run, ended, report)
            process_log.append(paths.root, proposal, run, f"Processing r{run} failed: {reason}",
                               echo=echo)
            raise ended.error_type(f"{reason}; see {log}")
        report = kept
        process_log.append(paths.root, proposal, run, f"Run {run}: {ended.stopped}; the "
                           "variables it had finished are kept", echo=echo)
    if evaluator.limits is not None:
        name_memory_limit(report, fragment, evaluator.limits)
    process_log.append(paths.root, proposal, run, summary(report, duration), echo=echo)
    return Evaluation(report=report, fragment=fragment, log=log, duration=duration)


def failure(run: int, ended: Ended, report: dict | None) -> str:
    """Why an evaluation that left nothing to keep failed, for the run's error."""
    error = (report or {}).get("error")
    if ended.ok:
        reason = f"the evaluation of run {run} wrote no results"
    elif ended.timed_out:
        reason = f"the evaluation of run {run} {ended.stopped}"
    else:
        reason = ended.stopped
    if error:
        reason += f": {error}"
    return reason + ended.hint


def keep_finished(fragment: Path, report: dict | None, stopped: str,
                  error_type=ChildProcessError) -> dict | None:
    """After the runner evaluating into ``fragment`` died, with ``report`` its last
    (partial) report: make ``fragment`` hold what it had finished, and an error
    ``error_type(stopped ...)`` for every variable not finished (the one it was computing
    is named). Returns the completed report, or None when the runner had not started to
    evaluate (nothing to keep: the run failed as a whole)."""
    from context_loader.fragment import complete_partial, write_fragment
    from context_loader.progress import partial_path

    if not report or not report.get("partial"):
        partial_path(fragment).unlink(missing_ok=True)
        return None
    done = set(report["done"])
    pending = [n for n in report["order"] if n not in done]
    running = pending[0] if pending else None
    errors = {}
    for name in pending:
        if name in report["transient"]:
            continue
        errors[name] = error_type(f"{stopped} while computing this variable" if name == running
                                  else f"not computed: {stopped} while computing {running!r}")
    if not complete_partial(fragment, errors):   # the partial file is unreadable
        errors = {name: error_type(f"{stopped}; its results are lost")
                  for name in report["order"] if name not in report["transient"]}
        write_fragment(fragment, {}, errors)
        report["variables"] = {}
    for name, error in errors.items():
        report["variables"][name] = {"status": "error", "error": str(error),
                                     "error_cls": type(error).__name__, "duration": None}
    for key in ("partial", "order", "done", "transient"):
        report.pop(key, None)
    return report


def name_memory_limit(report: dict, fragment: Path, limits: Limits) -> list[str]:
    """Rewrite the error of every variable that hit ``MemoryError`` so that it names the
    limit, in ``report`` and in the fragment's ``.errors/<name>``; return those names."""
    names = [n for n, v in report["variables"].items()
             if v.get("status") == "error"
             and (v.get("error_cls") or "").endswith("MemoryError")]
    if not names:
        return names
    import h5py  # only needed here

    with h5py.File(fragment, "r+") as f:
        for name in names:
            original = report["variables"][name].get("error")
            message = limits.memory_message(name) + (f": {original}" if original else "")
            report["variables"][name]["error"] = message
            path = f".errors/{name}"
            if path in f:
                del f[path]
            f.create_dataset(path, data=message).attrs["type"] = "MemoryError"
    return names


def take_report(path: Path) -> dict | None:
    """The runner's JSON report, or if it died while evaluating, the partial one from its
    progress log (``context_loader.progress.read_progress``); None if neither is readable.
    Both files are removed."""
    from context_loader.progress import progress_path, read_progress

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return read_progress(path)
    finally:
        path.unlink(missing_ok=True)
        progress_path(path).unlink(missing_ok=True)


def discard_partial(fragment: Path) -> None:
    """Remove what a runner that did not finish wrote of ``fragment``."""
    from context_loader.progress import partial_path

    partial_path(fragment).unlink(missing_ok=True)


def has_results(report: dict | None) -> bool:
    """True when a report says which variables were evaluated (the runner finished)."""
    return report is not None and "variables" in report


def discard(*paths: Path) -> None:
    """Remove files of a failed evaluation (missing ones are fine)."""
    for p in paths:
        p.unlink(missing_ok=True)


def summary(report: dict, duration: float) -> str:
    """The process log's last line of an evaluation: its time and its variables' statuses."""
    counts = {}
    for v in report["variables"].values():
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"----- r{report['run']} done in {duration:.2f} s: {parts or 'no variables'} -----"
