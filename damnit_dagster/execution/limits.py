"""The folder's limits on evaluations, enforced by the kernel.

Every evaluation of a run, local or in Slurm, may take ``slurm_time`` (default
``02:00:00``, the limit DAMNIT gives its processing jobs). A local evaluation runs in its
own process group, which is killed when it ends (:func:`wait_for_group`): at the time
limit, and in any case whatever the user's code started and left behind. When an
evaluation dies (time limit, a crash, ``os._exit``, the memory limit), the variables it
had finished are kept (:func:`.evaluator.keep_finished`), the others get an error saying
what stopped it.

``noncluster_cpus`` (default 4, at most the cores this process may use) becomes the CPU
affinity of the runner process, ``noncluster_mem`` (default ``25G``) its data limit
(``RLIMIT_DATA``: heap and private writable mappings, i.e. what arrays allocate; unlike
``RLIMIT_AS`` it does not count address space merely reserved, which programs such as the
Chromium behind plotly thumbnails reserve by the terabyte). Both are set by a tiny
wrapper (:data:`LIMITS_WRAPPER`, run by ``python -I -c``) that applies them to itself and
``exec``s the runner, so they hold for the whole evaluation and whatever it starts (no
``preexec_fn``, which is unsafe in a threaded parent such as a Dagster step).

An allocation over the limit raises ``MemoryError`` in the variable that made it; the
runner records that as the variable's error, and :func:`.evaluator.name_memory_limit`
rewrites it to a message naming the limit, so one greedy variable fails alone while its siblings are
stored. A runner killed outright (e.g. by a signal) fails the whole evaluation with an
error that names the limits.
"""
from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

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

    def apply_to_this_process(self, cores: list[int], *,
                              on_top_of_current: bool = False) -> None:
        """Pin this process to ``cores`` (from :func:`cores_for`) and cap its data
        (``RLIMIT_DATA``) at ``mem`` — plus what it already has when ``on_top_of_current``
        (a child forked from a warm process keeps its parent's mappings; the variables
        still get ``mem`` to use)."""
        import resource

        os.sched_setaffinity(0, cores)
        limit = self.mem
        if on_top_of_current:
            with open("/proc/self/status") as f:
                vm_data = next(line for line in f if line.startswith("VmData:"))
            limit += int(vm_data.split()[1]) * 1024
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    def wrap(self, cmd: list[str], cores: list[int]) -> list[str]:
        """``cmd`` behind the wrapper that applies these limits, pinned to ``cores``
        (run by our Python)."""
        return [sys.executable, "-I", "-c", LIMITS_WRAPPER, ",".join(map(str, cores)),
                str(self.mem), *cmd]


_in_use: collections.Counter = collections.Counter()
_in_use_lock = threading.Lock()


@contextlib.contextmanager
def cores_for(limits: Limits) -> Iterator[list[int]]:
    """``limits.cpus`` of this process's cores for one evaluation, the least used by the
    evaluations this process is running, so that concurrent ones do not share a core while
    another is idle; given back when the block ends."""
    allowed = sorted(os.sched_getaffinity(0))
    with _in_use_lock:
        chosen = sorted(sorted(allowed, key=lambda c: (_in_use[c], c))[:limits.cpus])
        _in_use.update(chosen)
    try:
        yield chosen
    finally:
        with _in_use_lock:
            _in_use.subtract(chosen)


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
