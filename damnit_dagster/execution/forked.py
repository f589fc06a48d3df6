"""Evaluations forked from a warm process: this one (a Dagster step's, which has loaded
the context file once) or a command's evaluation server (:mod:`.fork_server`).

The child pins itself to ``noncluster_cpus`` cores and may allocate ``noncluster_mem`` on
top of what it inherited (``RLIMIT_DATA``), so a greedy variable gets a MemoryError (its
own error; the others are stored) and a crash of user code cannot take the caller down.
It leads its own process group, killed when it ends or at the time limit
(``slurm_time``), so no process it started outlives it.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from damnit_dagster.execution.describe import file_sha
from damnit_dagster.execution.evaluator import Ended, Request, report_path
from damnit_dagster.execution.limits import Limits, cores_for, process_end, wait_for_group
from damnit_dagster.execution.process_log import header

_LOADING = threading.Lock()


@functools.lru_cache(maxsize=4)
def _loaded(path: str, sha: str | None, import_dir: str, neighbours: tuple):
    """The loaded file; ``sha`` and ``neighbours`` (:func:`neighbours_stamp`) only key the
    cache."""
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
        return _loaded(str(context_path), file_sha(context_path), str(damnit_dir),
                       neighbours_stamp(Path(context_path).parent, Path(damnit_dir)))


def neighbours_stamp(*folders: Path) -> tuple:
    """Name, size and modification time of the Python modules in ``folders`` (and in
    their packages): a module the context file imports from next to it that changes makes
    the file load again, as it would in a fresh process."""
    stamp = []
    for folder in dict.fromkeys(folders):
        for path in sorted([*folder.glob("*.py"), *folder.glob("*/*.py")]):
            try:
                st = path.stat()
            except OSError:
                continue
            stamp.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def warm_up_folder() -> None:
    """Load the context file of ``$DAMNIT_DIR`` in this warm process (the run workers'
    zygote, see :mod:`damnit_dagster.plugins.launcher`): the run workers forked from it find
    it loaded while it is unchanged. A broken file is left to the steps to report."""
    from damnit_dagster.storage.layout import DamnitPaths

    if not os.environ.get("DAMNIT_DIR"):
        return
    paths = DamnitPaths(os.environ["DAMNIT_DIR"])
    try:
        load_for_evaluation(paths.context_file, paths.root)
    except Exception:  # each evaluation meets (and reports) the problem again
        pass


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
                      track=None, inputs_from: str | None = None) -> dict:
    """Evaluate in a child forked from this (warm) process, under the folder's limits;
    returns ``{"exit": the child's exit code (negative: killed by that signal),
    "timed_out": whether it reached the time limit}`` (the arguments are JSON-safe, as an
    evaluation server receives them). The child's output is appended to the process log
    ``log``; its report goes next to ``fragment``
    (:func:`.evaluator.report_path`). With ``inputs_from`` (a run file), saved inputs are
    read from it (``context_loader.stored``). ``track(pid, alive)`` is told when the child
    runs (``alive`` True) and, before it is reaped, when it has ended.
    """

    ctx = load_for_evaluation(context_path, damnit_dir)
    limits = Limits.from_settings(settings)
    with cores_for(limits) as cores:
        return _fork_and_wait(ctx, limits, cores, damnit_dir=damnit_dir, proposal=proposal,
                              run=run, data=data, variables=variables, fragment=fragment,
                              log=log, track=track, inputs_from=inputs_from)


def _fork_and_wait(ctx, limits: Limits, cores: list[int], *, damnit_dir, proposal, run, data,
                   variables, fragment, log, track, inputs_from) -> dict:
    """The fork of :func:`evaluate_in_child`, pinned to ``cores``, and its wait."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        def evaluate():
            become_evaluator(limits, cores, damnit_dir, log)
            execute_run(ctx, proposal=proposal, run=run, data=data, variables=variables,
                        fragment=fragment, inputs_from=inputs_from)
        os._exit(0 if ran(evaluate) else 1)
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


def ran(work: Callable[[], object]) -> bool:
    """Call ``work``: False, its traceback printed, if it raised anything; this process's
    output is flushed either way (a forked child's exit status, or a run's answer)."""
    try:
        work()
        return True
    except BaseException:
        traceback.print_exc()
        return False
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def become_evaluator(limits: Limits, cores: list[int], damnit_dir, log) -> None:
    """In a child just forked to evaluate runs: lead its own process group, die with the
    thread that forked it, take the folder's ``limits`` on ``cores``, write its output to
    the process log ``log``, and work in ``damnit_dir``."""
    from context_loader.heap import keep_freed_heap

    os.setpgid(0, 0)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a server ignores it
    output_to(log)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits.apply_to_this_process(cores, on_top_of_current=True)
    keep_freed_heap()
    os.chdir(damnit_dir)  # the user's relative paths and local imports, as in DAMNIT
    os.umask(0)


def output_to(log) -> None:
    """Send this process's output (file descriptors 1 and 2) to the end of ``log``."""
    with open(log, "a", encoding="utf-8", errors="replace") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)


def execute_run(ctx, *, proposal, run, data, variables, fragment, inputs_from) -> None:
    """Evaluate one run with the loaded context file ``ctx`` into ``fragment`` and its
    report (the runner's work in an evaluating child)."""
    from context_loader import runner

    runner.execute(ctx, proposal, run, data, variables=tuple(variables),
                   fragment_path=str(fragment), report_path=report_path(Path(fragment)),
                   inputs_from=inputs_from)


class ForkedEvaluator:
    """The runner in a child forked from this process, or from ``server`` (a
    :class:`.fork_server.EvaluationServer`) when given; with ``workers`` (a
    :class:`.fork_worker.WorkerPool`), in the calling thread's child of that pool, which
    evaluates its runs in turn."""

    def __init__(self, settings: dict, server=None, workers=None):
        self.settings, self.server, self.workers = settings, server, workers
        self.limits = Limits.from_settings(settings)   # a bad setting is the run's error

    def header(self, request: Request) -> str:
        limits = self.limits
        where = ("in a warm child evaluating runs in turn" if self.workers is not None
                 else "forked from a warm process")
        return (f"{header(request.proposal, request.run)}\nvariables "
                f"{','.join(request.variables) or '(all)'}, data={request.data}, limits: "
                f"{limits.cpus} CPU cores, {limits.mem_text} memory, {limits.time_text}; "
                f"{where}")

    def fragment_for(self, request) -> None:
        return None

    def run(self, request: Request, *, fragment: Path, report: Path, log: Path,
            echo) -> Ended:
        start = log.stat().st_size
        child = dict(damnit_dir=str(request.damnit_dir), context_path=str(request.context_file),
                     proposal=request.proposal, run=request.run, data=request.data,
                     variables=list(request.variables), fragment=str(fragment), log=str(log),
                     settings=self.settings)
        if request.inputs_from is not None:
            child["inputs_from"] = str(request.inputs_from)
        if self.workers is not None:
            end = self.workers.evaluate(server=self.server, **child)
        elif self.server is not None:
            end = self.server.evaluate(**child)
        else:
            end = evaluate_in_child(**child)
        return self.ended(request, end, _new_output(log, start), echo)

    def ended(self, request: Request, end: dict, output: str, echo,
              duration: float | None = None) -> Ended:
        """How the child that wrote ``output`` ended (``end``: as
        :func:`evaluate_in_child` returns it); ``output`` is copied to ``echo``."""
        if echo is not None:
            echo.write(output)
            echo.flush()
        if end["exit"] == 0 and not end["timed_out"]:
            return Ended(ok=True, duration=duration)
        stopped = (self.limits.timed_out() if end["timed_out"]
                   else process_end(request.run, end["exit"], self.limits))
        if end["exit"] > 0 and (error := _raised(output)):
            stopped += f" ({error})"
        return Ended(ok=False, stopped=stopped, timed_out=end["timed_out"], duration=duration)


def _new_output(log: Path, start: int) -> str:
    """What the child appended to the process log."""
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        return f.read()


def _raised(output: str) -> str:
    """``Type: message`` of the exception whose traceback ends ``output``, or ''."""
    lines = output.rstrip().splitlines()
    if len(lines) < 2 or not lines[-2].startswith(" "):
        return ""
    kind, sep, message = lines[-1].partition(": ")
    if not sep or " " in kind:
        return ""
    return f"{kind.rpartition('.')[2]}: {message}"
