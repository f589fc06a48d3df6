"""Evaluations run under the folder's limits, enforced by the kernel.

Every evaluation of a run, local or in Slurm, may take ``slurm_time`` (default
``02:00:00``, the limit DAMNIT gives its processing jobs). A local evaluation runs in its
own process group, which is killed when it ends (:func:`wait_for_group`): at the time
limit, and in any case whatever the user's code started and left behind. When an
evaluation dies (time limit, a crash, ``os._exit``, the memory limit), the variables it
had finished are kept: :func:`keep_finished` stores them, the others get an error saying
what stopped it.

``noncluster_cpus`` (default 4, at most the cores this process may use) becomes the CPU
affinity of the runner process, ``noncluster_mem`` (default ``25G``) its data limit
(``RLIMIT_DATA``: heap and private writable mappings, i.e. what arrays allocate; unlike
``RLIMIT_AS`` it does not count address space merely reserved, which programs such as the
Chromium behind plotly thumbnails reserve by the terabyte). Both are set by a tiny
wrapper (:data:`LIMITS_WRAPPER`, run by ``python -I -c``) that applies them to itself and
``exec``s the runner, so they hold for the whole
evaluation and whatever it starts (no ``preexec_fn``, which is unsafe in a threaded
parent such as a Dagster step).

An allocation over the limit raises ``MemoryError`` in the variable that made it; the
runner records that as the variable's error, and :func:`evaluate_local` rewrites it to a
message naming the limit, so one greedy variable fails alone while its siblings are
stored. A runner killed outright (e.g. by a signal) fails the whole evaluation with an
error that names the limits.
"""
from __future__ import annotations

import collections
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from damnit_dagster.execution import environment, process_log
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.leftovers import new_fragment
from damnit_dagster.storage.settings import (
    SettingError,
    format_duration,
    parse_memory,
    slurm_time_seconds,
)

DEFAULT_CPUS = 4
DEFAULT_MEM = "25G"
DEFAULT_TIME = "02:00:00"

#: ``python -I -c LIMITS_WRAPPER CORES BYTES CMD...``: pin to CORES (``0,1``), limit the
#: data segment to BYTES (never above an existing hard limit), then become CMD.
LIMITS_WRAPPER = """\
import os, resource, sys
cores, mem, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
if hard != resource.RLIM_INFINITY:
    mem = min(mem, hard)
resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
os.execvp(cmd[0], cmd)
"""

#: What an allocation refused by RLIMIT_DATA looks like in a traceback: Python's error, a
#: shared library that cannot be mapped, errno ENOMEM, C++'s exception.
_OUT_OF_MEMORY = ("MemoryError", "failed to map segment", "Cannot allocate memory",
                  "std::bad_alloc", "Memory allocation still failed")  # the last: OpenBLAS


class ExecutionError(RuntimeError):
    """An evaluation failed as a whole (nothing to store); the message says why and
    where the log is."""


@dataclass(frozen=True)
class Limits:
    """CPU cores and memory (bytes) a non-cluster evaluation may use, and the time
    (seconds) any evaluation may take."""

    cpus: int
    mem: int
    time: int = 7200

    @classmethod
    def from_settings(cls, settings: dict | None = None) -> Limits:
        """From the folder's settings (``metameta``): ``noncluster_cpus``,
        ``noncluster_mem`` (``25G``, ``512M``...) and ``slurm_time``, with DAMNIT's
        defaults. The CPU count is capped at the cores this process may use."""
        settings = settings or {}
        raw_cpus = settings.get("noncluster_cpus") or DEFAULT_CPUS
        try:
            cpus = int(raw_cpus)
            if cpus < 1:
                raise ValueError
        except (TypeError, ValueError):
            raise SettingError(f"noncluster_cpus: {raw_cpus!r} is not a whole number "
                               "of at least 1") from None
        try:
            mem = parse_memory(str(settings.get("noncluster_mem") or DEFAULT_MEM))
        except SettingError as e:
            raise SettingError(f"noncluster_mem: {e}") from None
        try:
            seconds = slurm_time_seconds(settings.get("slurm_time") or DEFAULT_TIME)
        except SettingError as e:
            raise SettingError(f"slurm_time: {e}") from None
        return cls(cpus=min(cpus, len(os.sched_getaffinity(0))), mem=mem, time=seconds)

    @property
    def time_text(self) -> str:
        """The time limit as ``HH:MM:SS``."""
        return format_duration(self.time)

    def timed_out(self) -> str:
        """What stopped an evaluation at the time limit, for its variables' errors."""
        return f"timed out after {self.time_text} (the slurm_time limit)"

    @property
    def mem_text(self) -> str:
        """The memory limit for people: ``25 GB``, ``512 MB``, ``1.5 GB``."""
        gib = self.mem / 1024 ** 3
        if gib >= 1:
            return f"{gib:.3g} GB"
        return f"{self.mem / 1024 ** 2:.3g} MB"

    def memory_message(self, name: str) -> str:
        return (f"variable '{name}' exceeded the {self.mem_text} memory limit for "
                "non-cluster variables (noncluster_mem)")

    def core_set(self) -> list[int]:
        """The cores to pin to: ``cpus`` of the allowed ones, the window rotated by this
        process's pid so that concurrent evaluations spread over a large machine."""
        allowed = sorted(os.sched_getaffinity(0))
        start = (os.getpid() * self.cpus) % len(allowed)
        return sorted((allowed * 2)[start:start + self.cpus])

    def apply_to_this_process(self, *, on_top_of_current: bool = False) -> None:
        """Pin this process to :meth:`core_set` and cap its data (``RLIMIT_DATA``) at
        ``mem`` — plus what it already has when ``on_top_of_current`` (a child forked from a warm
        process keeps its parent's mappings; the variables still get ``mem`` to use)."""
        import resource

        os.sched_setaffinity(0, self.core_set())
        limit = self.mem
        if on_top_of_current:
            with open("/proc/self/status") as f:
                vm_data = next(line for line in f if line.startswith("VmData:"))
            limit += int(vm_data.split()[1]) * 1024
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` behind the wrapper that applies these limits (run by our Python)."""
        cores = ",".join(map(str, self.core_set()))
        return [sys.executable, "-I", "-c", LIMITS_WRAPPER, cores, str(self.mem), *cmd]


@dataclass
class Evaluation:
    """What an evaluation produced: the runner's report (see ``context_loader.runner``)
    and the fragment to store with ``damnit_dagster.storage.writer.store_fragment``."""

    report: dict
    fragment: Path
    log: Path
    duration: float


def new_fragment_path(damnit_dir, proposal: int, run: int) -> Path:
    """A fresh fragment name in ``extracted_data/`` (shared storage, so a Slurm job on
    another node can write it too), owned by this process (see
    :mod:`damnit_dagster.storage.leftovers`)."""
    paths = DamnitPaths(damnit_dir)
    paths.make_dirs()
    return new_fragment(paths, proposal, run)


def report_path(fragment: Path) -> Path:
    """Where the runner writes its report for ``fragment``."""
    return Path(str(fragment) + ".report.json")


def evaluate_local(damnit_dir, proposal: int, run: int, data: str = "all", *,
                   variables=(), match=(), cluster: bool | None = False,
                   settings: dict | None = None, context_path=None, echo=True) -> Evaluation:
    """Evaluate the variables selected by ``data``/``variables``/``match``/``cluster``
    (default: the non-cluster ones; see ``ContextFile.select``) for one run, under the
    folder's limits, with ``settings['context_python']``.

    The runner's output is appended to ``process_logs/r{R}-p{P}.out`` and, unless
    ``echo`` is None, copied to ``echo`` (default ``sys.stderr``: Dagster's compute log).
    Returns the :class:`Evaluation` (when the runner died or hit the time limit, what it
    had finished and errors for the rest); raises :class:`ExecutionError` when the
    evaluation failed as a whole (the context file does not load, the run cannot be
    opened, the process died before evaluating...), ``ContextPythonError`` for an
    unusable ``context_python``.
    """
    settings = settings or {}
    limits = Limits.from_settings(settings)
    python = environment.resolve_python(settings.get("context_python"))
    environment.check_python(python)
    paths = DamnitPaths(damnit_dir)
    context_path = Path(context_path or paths.context_file).absolute()
    echo = process_log.resolve_echo(echo)
    fragment = new_fragment_path(paths.root, proposal, run)
    report_file = report_path(fragment)
    cmd = environment.runner_command(
        python, context_path, proposal, run, data, fragment=fragment, report=report_file,
        variables=variables, match=match, cluster=cluster)
    log = process_log.append(
        paths.root, proposal, run,
        f"\n{process_log.header(proposal, run)}\n"
        f"{'non-cluster ' if cluster is False else ''}variables, data={data}, limits: {limits.cpus} CPU cores, "
        f"{limits.mem_text} memory, {limits.time_text}; python: {python}", echo=echo)

    t0 = time.monotonic()
    returncode, timed_out, output = _run_teed(limits.wrap(cmd), cwd=paths.root, log=log,
                                              echo=echo, timeout=limits.time)
    duration = time.monotonic() - t0
    report = take_report(report_file)
    if returncode != 0 or not has_results(report) or report.get("partial"):
        stopped = limits.timed_out() if timed_out else process_end(run, returncode, limits)
        kept = keep_finished(fragment, report, stopped, TimeoutError if timed_out
                             else ChildProcessError)
        if kept is None:
            discard(fragment)
            raise _failed(paths, proposal, run, _whole_failure(run, returncode, timed_out,
                                                               report, output, limits))
        report = kept
        process_log.append(paths.root, proposal, run, f"Run {run}: {stopped}; the variables "
                           "it had finished are kept", echo=echo)
    name_memory_limit(report, fragment, limits)
    process_log.append(paths.root, proposal, run, _summary(report, duration), echo=echo)
    return Evaluation(report=report, fragment=fragment, log=log, duration=duration)


def process_end(run: int, returncode: int, limits: Limits) -> str:
    """How the process evaluating ``run`` ended, for errors: killed by which signal (with
    the limits it may have exceeded), or its exit status."""
    if returncode < 0:
        try:
            name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            name = ""
        return (f"the process evaluating run {run} was killed by signal {-returncode}{name}; "
                f"it may have exceeded the limits for non-cluster variables "
                f"({limits.mem_text} memory, noncluster_mem; {limits.cpus} CPU cores, "
                "noncluster_cpus)")
    return f"the process evaluating run {run} exited with status {returncode}"


def _whole_failure(run, returncode, timed_out, report, output, limits) -> str:
    """Why an evaluation that left nothing to keep failed, for the run's error."""
    if timed_out:
        return f"the evaluation of run {run} {limits.timed_out()}"
    if returncode < 0:
        return process_end(run, returncode, limits)
    detail = (report or {}).get("error") or "the runner ended without writing its report"
    if any(marker in output for marker in _OUT_OF_MEMORY):
        detail += (f" (out of memory: the limit for non-cluster variables is "
                   f"{limits.mem_text}, noncluster_mem)")
    return f"evaluating run {run} failed (exit {returncode}): {detail}"


def keep_finished(fragment: Path, report: dict | None, stopped: str,
                  error_type=ChildProcessError) -> dict | None:
    """After the runner evaluating into ``fragment`` died, with ``report`` its last
    (partial) report: make ``fragment`` hold what it had finished, and an error
    ``error_type(stopped ...)`` for every variable not finished (the one it was computing
    is named). Returns the completed report, or None when the runner had not started to
    evaluate (nothing to keep: the run failed as a whole)."""
    from context_loader.fragment import complete_partial, partial_path, write_fragment

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


def wait_for_group(pid: int, timeout: float | None) -> bool:
    """Wait for process ``pid``, the leader of its own process group, to end (killing it
    after ``timeout`` seconds), then kill whatever is left in its group. The leader is
    not reaped, so that the group's number cannot be reused meanwhile: the caller reaps
    it. Returns True when the time limit was reached."""
    try:
        fd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        if not ready:
            kill_group(pid)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    finally:   # also when interrupted: nothing of the evaluation outlives it
        kill_group(pid)
    return not ready


def kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid`` (no error when it is gone)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def name_memory_limit(report: dict, fragment: Path, limits: Limits) -> list[str]:
    """Rewrite the error of every variable that hit ``MemoryError`` so that it names the
    limit, in ``report`` and in the fragment's ``.errors/<name>``; return those names."""
    names = [n for n, v in report["variables"].items()
              if v.get("status") == "error"
             and (v.get("error_cls") or "").endswith("MemoryError")]
    if not names:
        return names
    import h5py  # only needed here; keeps the launcher's start-up light

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


def _run_teed(cmd, *, cwd, log: Path, echo, timeout) -> tuple[int, bool, str]:
    """Run ``cmd`` in its own process group (killed when it ends, or after ``timeout``
    seconds) with its stdout+stderr appended to ``log`` and copied to ``echo``; return
    its exit code, whether it timed out, and the last lines it printed."""
    env = environment.runner_env()
    last = collections.deque(maxlen=30)
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

        def pump():
            for line in proc.stdout:
                last.append(line)
                log_file.write(line)
                log_file.flush()
                if echo is not None:
                    echo.write(line.decode("utf-8", "replace"))
                    echo.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            timed_out = wait_for_group(proc.pid, timeout)
        finally:   # also when the Dagster step is interrupted
            returncode = proc.wait()
            reader.join(timeout=10)
    return returncode, timed_out, b"".join(last).decode("utf-8", "replace")


def take_report(path: Path) -> dict | None:
    """The runner's JSON report (its file removed), or None if missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    finally:
        path.unlink(missing_ok=True)


def has_results(report: dict | None) -> bool:
    """True when a report says which variables were evaluated (the runner finished)."""
    return report is not None and "variables" in report


def discard(*paths: Path) -> None:
    """Remove files of a failed evaluation (missing ones are fine)."""
    for p in paths:
        p.unlink(missing_ok=True)


def _failed(paths: DamnitPaths, proposal: int, run: int, reason: str) -> ExecutionError:
    log = process_log.append(paths.root, proposal, run, f"Processing r{run} failed: {reason}")
    return ExecutionError(f"{reason}; see {log}")


def _summary(report: dict, duration: float) -> str:
    counts = {}
    for v in report["variables"].values():
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"----- r{report['run']} done in {duration:.2f} s: {parts or 'no variables'} -----"
