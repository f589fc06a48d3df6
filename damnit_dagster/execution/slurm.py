"""``cluster=True`` variables run in a Slurm job, as DAMNIT runs them.

The job is submitted with ``sbatch`` (no Slurm library: the same commands work against
any Slurm version), named ``r{R}-p{P}-damnit``, with its stdout and stderr appended to
``process_logs/r{R}-p{P}.out``. Settings come from the folder's ``metameta``
(``slurm_partition``, ``slurm_reservation`` which wins over the partition, ``slurm_time``,
``slurm_clusters``, passed only when set since ``--clusters`` needs Slurm accounting).
The job is followed by polling ``squeue``/``scontrol``/``sacct`` (``sbatch --wait`` polls
too slowly) until it ends; the job runs the same runner as a local evaluation, so its
fragment is stored like any other.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import getpass
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from damnit_dagster.execution import environment, process_log
from damnit_dagster.execution.evaluator import (
    Ended,
    Evaluation,
    ExecutionError,
    Request,
    evaluate,
)
from damnit_dagster.execution.limits import DEFAULT_TIME, Limits

#: States after which a job never runs again.
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                   "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT",
                   "REVOKED"}
#: Our own state for a job that Slurm no longer knows although we never saw it end.
LOST = "LOST"

_CMD_TIMEOUT = 60.0


class SlurmError(RuntimeError):
    """A Slurm command failed (e.g. ``sbatch`` refused the job); the message has
    Slurm's own words and the settings involved."""


class JobFailed(ExecutionError):
    """A Slurm job ended without results: failed, cancelled, timed out or lost."""

    def __init__(self, message: str, end: JobEnd):
        super().__init__(message)
        self.end = end


@dataclass(frozen=True)
class SlurmSettings:
    """How cluster jobs are submitted (the folder's ``slurm_*`` settings)."""

    partition: str | None = None
    reservation: str | None = None
    time: str = DEFAULT_TIME
    clusters: str | None = None

    @classmethod
    def from_settings(cls, settings: dict | None = None) -> SlurmSettings:
        """From ``metameta``: ``slurm_partition``, ``slurm_reservation``, ``slurm_time``,
        ``slurm_clusters`` (empty values count as unset)."""
        s = settings or {}
        return cls(partition=s.get("slurm_partition") or None,
                   reservation=s.get("slurm_reservation") or None,
                   time=s.get("slurm_time") or DEFAULT_TIME,
                   clusters=s.get("slurm_clusters") or None)

    def options(self) -> list[str]:
        """``[--clusters C] --time T (--reservation R | --partition P)``; without a
        partition setting, DAMNIT's default for the user, or else the cluster's
        default partition (no option)."""
        opts = ["--clusters", self.clusters] if self.clusters else []
        opts += ["--time", self.time]
        if self.reservation:
            opts += ["--reservation", self.reservation]
        else:
            partition = self.partition or default_partition()
            if partition:
                opts += ["--partition", partition]
        return opts


def default_partition(user: str | None = None) -> str | None:
    """DAMNIT's default partition at EuXFEL: ``exfel`` for members of the netgroup
    ``exfel-wgs-users``, ``upex`` for ``upex-users``; None (Slurm's default) otherwise."""
    user = (user or getpass.getuser()).encode()
    try:
        innetgr = ctypes.CDLL(ctypes.util.find_library("c")).innetgr
    except (OSError, AttributeError):
        return None
    for netgroup, partition in (("exfel-wgs-users", "exfel"), ("upex-users", "upex")):
        if innetgr(netgroup.encode(), None, user, None):
            return partition
    return None


def job_name(proposal: int, run: int) -> str:
    """``r{run}-p{proposal}-damnit`` (``p{proposal}-damnit`` for run -1, as DAMNIT)."""
    return f"p{proposal}-damnit" if int(run) == -1 else f"r{run}-p{proposal}-damnit"


@dataclass(frozen=True)
class SlurmJob:
    """A submitted job."""

    job_id: str
    cluster: str | None
    name: str
    log: Path

    def _cluster_opts(self) -> list[str]:
        return ["--clusters", self.cluster] if self.cluster else []


@dataclass(frozen=True)
class JobEnd:
    """How a job ended: ``state`` (``COMPLETED``, ``FAILED``, ``CANCELLED``, ``TIMEOUT``,
    ... or :data:`LOST`), ``exit_code`` (``"2:0"``: code and signal) and what Slurm
    reported about it (``scontrol show job`` fields, empty if it had forgotten it)."""

    job: SlurmJob
    state: str
    exit_code: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"

    def describe(self) -> str:
        """E.g. ``Slurm job 12 (r5-p1234-damnit) FAILED with exit code 2``."""
        what = f"Slurm job {self.job.job_id} ({self.job.name})"
        if self.state == LOST:
            return (f"{what} was lost: Slurm no longer knows it and it never reported an "
                    "end (the controller may have been restarted or its state wiped)")
        if self.state == "CANCELLED":
            return f"{what} was cancelled"
        if self.state == "TIMEOUT":
            limit = self.info.get("TimeLimit", "its time limit")
            return f"{what} reached its time limit ({limit}, slurm_time) and was stopped"
        if self.state == "OUT_OF_MEMORY":
            return f"{what} ran out of memory on {self.info.get('NodeList', 'its node')}"
        code, _, signal = (self.exit_code or "").partition(":")
        if self.state == "FAILED" and code not in ("", "0"):
            return f"{what} FAILED with exit code {code}"
        if signal not in ("", "0"):
            return f"{what} ended {self.state} (signal {signal})"
        return f"{what} ended {self.state}"


def run_slurm(args: list[str]) -> subprocess.CompletedProcess:
    """Run a Slurm command (its exit code is the caller's to judge)."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=_CMD_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(f"{args[0]} not found: Slurm's commands must be on PATH to run "
                         "cluster=True variables") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{shlex.join(args)} did not answer in {_CMD_TIMEOUT:g} s") from None
    return proc


def sbatch_command(wrap: str, *, proposal: int, run: int, log_path, settings: SlurmSettings,
                   chdir=None) -> list[str]:
    """The ``sbatch`` command line for a job running the shell command ``wrap``."""
    cmd = ["sbatch", "--parsable", "--job-name", job_name(proposal, run),
           "-o", str(log_path), "--open-mode=append", *settings.options()]
    if chdir is not None:
        cmd += ["--chdir", str(chdir)]
    return cmd + ["--wrap", wrap]


def submit(cmd: list[str], *, proposal: int, run: int, log_path, settings: SlurmSettings,
           cwd, env: dict | None = None, note: str = "") -> SlurmJob:
    """Submit ``cmd`` as a job that first writes DAMNIT's header line (and ``note``, if
    given) to the log; it runs in ``cwd`` with the environment ``env``.

    Raises :class:`SlurmError` with Slurm's message (e.g. ``Invalid partition name
    specified``) and the partition/reservation it was given.
    """
    head = process_log.header(proposal, run, job_id="$SLURM_JOB_ID",
                              cluster="${SLURM_CLUSTER_NAME:-default}",
                              user="$(id -un)", host="$(hostname)")
    # The header's $... parts expand in the job (its id, user and node).
    echo_note = f"; echo {shlex.quote(note)}" if note else ""
    wrap = f'{{ echo; echo "{head}"{echo_note}; }} >&2; exec {shlex.join(cmd)}'
    args = sbatch_command(wrap, proposal=proposal, run=run, log_path=log_path,
                          settings=settings, chdir=cwd)
    job_id, cluster = sbatch(args, env=env, what=f"the job for run {run}", settings=settings)
    return SlurmJob(job_id=job_id, cluster=cluster, name=job_name(proposal, run),
                    log=Path(log_path))


def sbatch(args: list[str], *, env: dict | None, what: str, settings: SlurmSettings,
           script: str | None = None) -> tuple[str, str | None]:
    """Run the ``sbatch --parsable`` command ``args`` (with the batch ``script`` on its
    standard input, if given); return the job id and cluster. Raises :class:`SlurmError`
    with Slurm's message (e.g. ``Invalid partition name specified``) naming ``what`` was
    refused and the partition/reservation it was given."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=_CMD_TIMEOUT,
                              env=env, input=script,
                              stdin=subprocess.DEVNULL if script is None else None)
    except FileNotFoundError:
        raise SlurmError("sbatch not found: Slurm's commands must be on PATH to run "
                         "Slurm jobs") from None
    if proc.returncode != 0:
        said = "; ".join(line.removeprefix("sbatch: error: ")
                         for line in proc.stderr.strip().splitlines())
        raise SlurmError(f"sbatch refused {what} ({' '.join(settings.options())}): {said}")
    job_id, _, cluster = proc.stdout.strip().partition(";")  # "12" or "12;maxwell"
    return job_id, cluster or settings.clusters


def job_info(job: SlurmJob) -> dict | None:
    """``scontrol show job`` as a dict (``JobState``, ``ExitCode``, ``Partition``,
    ``Reservation``, ``StdOut``...), or None once Slurm has forgotten the job. Raises
    :class:`SlurmError` when the controller cannot be asked."""
    proc = run_slurm(["scontrol", *job._cluster_opts(), "show", "job", job.job_id, "-o"])
    if proc.returncode != 0 and "Invalid job id" in proc.stderr:
        return None
    if proc.returncode != 0 or "JobState=" not in proc.stdout:
        raise SlurmError(f"scontrol show job {job.job_id} failed: "
                         f"{(proc.stderr or proc.stdout).strip()}")
    return parse_job_line(proc.stdout.strip().splitlines()[0])


def parse_job_line(line: str) -> dict:
    """One line of ``scontrol show job -o`` as a dict of its ``Key=value`` fields."""
    info, key = {}, None
    for token in line.split():
        k, eq, v = token.partition("=")
        if eq and k:
            key, info[k] = k, v
        elif key:  # a value with spaces
            info[key] += " " + token
    return info


def _sacct_state(job: SlurmJob) -> tuple[str, str] | None:
    """State and exit code from accounting (only where slurmdbd runs)."""
    proc = run_slurm(["sacct", *job._cluster_opts(), "-X", "-n", "-P", "-j", job.job_id,
                   "-o", "State,ExitCode"])
    line = proc.stdout.strip().splitlines()[:1]
    if proc.returncode != 0 or not line:
        return None
    state, _, code = line[0].partition("|")
    return state.split()[0], code  # "CANCELLED by 0" -> CANCELLED


def job_state(job: SlurmJob) -> tuple[str | None, dict]:
    """The job's state now (``PENDING``, ``RUNNING``, ``COMPLETED``...) and its details;
    ``(None, {})`` when no Slurm command knows the job any more. Raises
    :class:`SlurmError` when the controller cannot be asked."""
    info = job_info(job)
    if info is not None:
        return info["JobState"], info
    acct = _sacct_state(job)
    if acct is not None:
        return acct[0], {"JobState": acct[0], "ExitCode": acct[1]}
    return None, {}


def wait(job: SlurmJob, *, poll: float = 0.2, max_poll: float = 2.0,
         timeout: float | None = None, lost_after: float = 60.0,
         unreachable_after: float = 600.0, echo=None, log_offset: int | None = None,
         on_running=None) -> JobEnd:
    """Follow ``job`` until it ends and return how. Polls every ``poll`` seconds, slowing
    to ``max_poll``; what the job appends to its log after ``log_offset`` (default: the
    log's size now) is copied to ``echo`` meanwhile.

    A job Slurm does not know for ``lost_after`` seconds is :data:`LOST`; a controller
    that cannot be asked for ``unreachable_after`` seconds raises :class:`SlurmError`.
    With ``timeout``, the job is cancelled after that many seconds and ``TimeoutError``
    raised. ``on_running(info)`` is called once when the job is seen running.
    """
    started = time.monotonic()
    if log_offset is None:
        log_offset = job.log.stat().st_size if job.log.exists() else 0
    offset = log_offset
    unknown_since = trouble_since = None
    delay = poll
    while True:
        now = time.monotonic()
        try:
            state, info = job_state(job)
            trouble_since = None
        except SlurmError:
            trouble_since = trouble_since or now
            if now - trouble_since >= unreachable_after:
                raise
            state, info = "UNREACHABLE", {}  # not an end: ask again
        offset = _copy_new(job.log, offset, echo)
        if state is None:
            unknown_since = unknown_since or now
            if now - unknown_since >= lost_after:
                return JobEnd(job, LOST)
        else:
            unknown_since = None
            if state == "RUNNING" and on_running is not None:
                on_running(info)
                on_running = None
            if state in TERMINAL_STATES:
                return JobEnd(job, state, info.get("ExitCode"), info)
        if timeout is not None and time.monotonic() - started > timeout:
            cancel(job)
            raise TimeoutError(f"Slurm job {job.job_id} ({job.name}) did not end within "
                               f"{timeout:g} s; it was cancelled")
        time.sleep(delay)
        delay = min(max_poll, delay * 1.5)


def _copy_new(path: Path, offset: int, echo) -> int:
    """Copy what was appended to ``path`` since ``offset`` to ``echo``; new offset."""
    if echo is None:
        return offset
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            new = f.read()
    except FileNotFoundError:
        return offset
    if new:
        echo.write(new.decode("utf-8", "replace"))
        echo.flush()
    return offset + len(new)


def cancel(job: SlurmJob) -> None:
    """Cancel the job (no error if it has already ended)."""
    run_slurm(["scancel", *job._cluster_opts(), job.job_id])


class SlurmEvaluator:
    """The runner in a Slurm job ``r{R}-p{P}-damnit``, followed until it ends (the job
    writes its own header to the process log, with its id). When the caller is
    interrupted (the Dagster run is terminated) or ``timeout`` seconds pass, the job is
    cancelled."""

    #: A Slurm job is held to its own limits (``--time``), not the folder's local ones.
    limits = None
    #: Told the job's state: ``on_state("PENDING"|"RUNNING", hostname=, username=,
    #: slurm_cluster=, slurm_job_id=)`` (DAMNIT's GUI shows it).
    on_state = None

    def __init__(self, settings: dict, *, poll: float = 0.2, timeout: float | None = None):
        self.slurm = SlurmSettings.from_settings(settings)
        self.time_limit = Limits.from_settings(settings)
        self.python = environment.resolve_python(settings.get("context_python"))
        environment.check_python(self.python)
        self.poll, self.timeout = poll, timeout

    def header(self, request) -> None:
        return None

    def fragment_for(self, request) -> None:
        return None

    def run(self, request, *, fragment: Path, report: Path, log: Path, echo) -> Ended:
        cmd = environment.runner_command(
            self.python, request.context_file, request.proposal, request.run, request.data,
            fragment=fragment, report=report, variables=request.variables,
            match=request.match, cluster=request.cluster)
        log_offset = log.stat().st_size
        job = submit(cmd, proposal=request.proposal, run=request.run, log_path=log,
                     settings=self.slurm, cwd=request.damnit_dir, env=environment.runner_env(),
                     note=f"{'cluster ' if request.cluster else ''}variables, "
                          f"data={request.data}; python: {self.python}")
        if echo is not None:
            echo.write(f"Submitted Slurm job {job.job_id} ({job.name}) for run "
                       f"{request.run}; log: {log}\n")
        on_running = None
        if self.on_state is not None:
            job_info = {"slurm_cluster": job.cluster, "slurm_job_id": job.job_id}
            self.on_state("PENDING", hostname="", username="", **job_info)

            def on_running(info):
                self.on_state("RUNNING", hostname=info.get("NodeList", ""),
                              username=getpass.getuser(), **job_info)
        try:
            end = wait(job, poll=self.poll, timeout=self.timeout, echo=echo,
                       log_offset=log_offset, on_running=on_running)
        except BaseException as e:  # interrupted, or the timeout: do not leave the job behind
            cancel(job)
            if isinstance(e, TimeoutError):
                raise ExecutionError(f"{e}; see {log}") from None
            raise
        if end.ok:
            return Ended(ok=True)
        timed_out = end.state == "TIMEOUT"
        return Ended(ok=False, timed_out=timed_out,
                     stopped=self.time_limit.timed_out() if timed_out else end.describe(),
                     error_type=lambda message: JobFailed(message, end))


def evaluate_in_slurm(damnit_dir, proposal: int, run: int, data: str = "all", *,
                      variables=(), match=(), cluster: bool | None = True,
                      settings: dict | None = None, context_path=None, echo=True,
                      poll: float = 0.2, timeout: float | None = None) -> Evaluation:
    """Evaluate the selected variables of one run (default: the ``cluster=True`` ones and
    those depending on them) in a Slurm job (see :func:`.evaluator.evaluate`). Raises
    :class:`JobFailed` (failed, cancelled, timed out, lost: the message says which and
    names the log) when it left nothing to keep, :class:`ExecutionError` when ``timeout``
    (seconds) passed first, :class:`SlurmError` when the job cannot be submitted,
    ``ContextPythonError`` for an unusable ``context_python``."""
    settings = settings or {}
    request = Request(Path(damnit_dir), int(proposal), int(run), data, tuple(variables),
                      tuple(match), cluster, settings, context_path)
    return evaluate(SlurmEvaluator(settings, poll=poll, timeout=timeout), request, echo=echo)
