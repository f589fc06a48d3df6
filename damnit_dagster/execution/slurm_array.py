"""Many runs in one Slurm job array: what ``reprocess --slurm`` evaluates them with.

:class:`SlurmArray` submits one array for a list of runs, as DAMNIT's ``reprocess``
does: job name ``p{P}-damnit``, at most ``concurrent_jobs`` tasks running at once (the
``%N`` throttle), each task with ``noncluster_cpus`` cores and ``noncluster_mem`` memory,
in ``slurm_partition`` (or ``slurm_reservation``, which wins) and ``slurm_clusters`` if
set. A task evaluates its runs (``slurm_runs_per_task``; by default the runs are spread
evenly over the task slots) one after the other with one load of the context file
(``python -m context_loader exec-runs`` in ``context_python``), each into its own
fragment and report, its output appended to the run's ``process_logs/r{R}-p{P}.out``.

Nothing on a compute node writes ``runs.sqlite`` or the run files: :meth:`SlurmArray.ended`
yields each run as its report appears (or its task ends without one), and the caller
stores it then with :func:`damnit_dagster.execution.process_run.evaluate_and_store` and
the run's :class:`ArrayTask` as evaluator, so results arrive run by run. A task that
Slurm stops (time limit, memory, ``scancel``, node failure) fails its unfinished runs
only, with Slurm's reason: those runs are not processed and keep their earlier values
(nothing of a run cut short is stored).
"""
from __future__ import annotations

import dataclasses
import getpass
import json
import math
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from damnit_dagster.execution import environment, process_log
from damnit_dagster.execution.evaluator import Ended, report_path
from damnit_dagster.execution.limits import DEFAULT_CPUS, DEFAULT_MEM
from damnit_dagster.execution.slurm import (
    LOST,
    TERMINAL_STATES,
    JobEnd,
    JobFailed,
    SlurmError,
    SlurmJob,
    SlurmSettings,
    job_name,
    parse_job_line,
    run_slurm,
    sbatch,
)
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.leftovers import new_fragment
from damnit_dagster.storage.settings import format_duration, slurm_time_seconds

#: Slurm's default ``MaxArraySize`` allows task ids up to 1000; bigger arrays are split
#: into arrays that run one after the other (as DAMNIT does).
MAX_TASKS = 1000
#: Seconds to wait, after cancelling an array, for Slurm to have stopped its tasks.
CANCEL_WAIT = 15.0
#: Seconds a task may be over without a report for a run before that run counts as
#: ended with the task (shared file systems may show files late).
REPORT_GRACE = 5.0


@dataclass(frozen=True)
class ArraySettings:
    """How the array is cut and what each task asks for (the folder's settings)."""

    slots: int = 15
    runs_per_task: int | None = None
    cpus: str = str(DEFAULT_CPUS)
    mem: str = DEFAULT_MEM
    slurm: SlurmSettings = SlurmSettings()

    @classmethod
    def from_settings(cls, settings: dict | None = None) -> ArraySettings:
        """From ``metameta``: ``concurrent_jobs``, ``slurm_runs_per_task``,
        ``noncluster_cpus``, ``noncluster_mem`` and the ``slurm_*`` settings."""
        s = settings or {}
        per_task = s.get("slurm_runs_per_task")
        return cls(slots=int(s.get("concurrent_jobs") or 15),
                   runs_per_task=int(per_task) if per_task else None,
                   cpus=str(s.get("noncluster_cpus") or DEFAULT_CPUS),
                   mem=str(s.get("noncluster_mem") or DEFAULT_MEM),
                   slurm=SlurmSettings.from_settings(s))

    def chunks(self, runs: list[int]) -> list[list[int]]:
        """``runs`` dealt round-robin into tasks of ``runs_per_task`` runs (default: as
        many tasks as slots), so the table fills in run order."""
        per_task = self.runs_per_task or math.ceil(len(runs) / self.slots)
        n_tasks = math.ceil(len(runs) / per_task)
        return [runs[i::n_tasks] for i in range(n_tasks)]


@dataclass
class RunFiles:
    """Where one run's task writes: its fragment, report and log; which task runs it."""

    run: int
    fragment: Path
    report: Path
    log: Path
    log_offset: int
    task: str = ""
    end: Ended | None = None
    running_told: bool = False


class SlurmArray:
    """One job array evaluating ``runs`` (see the module's text); with ``stored_inputs``,
    the saved variables the selected ones depend on are read from each run's file. Use as
    a context manager: leaving it cancels the tasks not ended (the step was interrupted)."""

    def __init__(self, damnit_dir, proposal: int, runs, context_path, *, data: str,
                 variables=(), settings: dict | None = None, poll: float = 0.5,
                 stored_inputs: bool = False, on_state: Callable[..., None] | None = None):
        self.paths = DamnitPaths(damnit_dir)
        self.proposal, self.runs = int(proposal), [int(r) for r in runs]
        self.context_path, self.data, self.variables = Path(context_path), data, tuple(variables)
        self.settings = ArraySettings.from_settings(settings)
        self.python = environment.resolve_python((settings or {}).get("context_python"))
        self.poll, self.on_state, self.stored_inputs = poll, on_state, stored_inputs
        self.jobs: list[SlurmJob] = []
        self.files: dict[int, RunFiles] = {}
        self._over: dict[str, float] = {}        # task -> when it was first seen ended

    def evaluates(self, runs, context_path, variables, data: str,
                  stored_inputs: bool) -> bool:
        """Whether this (submitted) array evaluates exactly ``variables`` of
        ``context_path`` for every one of ``runs``, as a step asking for them would."""
        return (bool(self.jobs) and set(runs) <= set(self.runs)
                and Path(context_path) == self.context_path
                and tuple(variables) == self.variables and data == self.data
                and stored_inputs == self.stored_inputs)

    # -- submission ------------------------------------------------------------------

    def submit(self) -> list[SlurmJob]:
        """Submit the array(s); returns the jobs. Raises :class:`SlurmError` with Slurm's
        message when refused (then nothing was submitted that could run)."""
        environment.check_python(self.python)
        self.paths.make_dirs()
        for run in self.runs:
            fragment = new_fragment(self.paths, self.proposal, run)
            log = process_log.ensure_log(self.paths.root, self.proposal, run)
            self.files[run] = RunFiles(run, fragment, report_path(fragment), log,
                                       log.stat().st_size)
        chunks = self.settings.chunks(self.runs)
        try:
            for first in range(0, len(chunks), MAX_TASKS):
                self._submit(chunks[first:first + MAX_TASKS])
        except BaseException:
            self.cancel()
            self._discard_files()
            raise
        return self.jobs

    def _submit(self, chunks: list[list[int]]) -> None:
        s = self.settings
        longest = max(len(c) for c in chunks)
        slurm = dataclasses.replace(s.slurm, time=format_duration(
            slurm_time_seconds(s.slurm.time) * longest))   # slurm_time is per run
        name = job_name(self.proposal, -1)
        args = ["sbatch", "--parsable", "--job-name", name,
                "--array", f"0-{len(chunks) - 1}%{s.slots}",
                "-o", str(self.paths.logs_dir / f".p{self.proposal}-array-%A_%a.out"),
                "--open-mode=append", "--cpus-per-task", s.cpus, "--mem", s.mem,
                "--chdir", str(self.paths.root), *slurm.options()]
        if self.jobs:   # one array at a time, so the throttle holds across them
            args.append(f"--dependency=afterany:{self.jobs[-1].job_id}")
        job_id, cluster = sbatch(args, env=environment.runner_env(), settings=slurm,
                                 what=f"the job array for {len(self.runs)} runs",
                                 script=self._script(chunks))
        job = SlurmJob(job_id=job_id, cluster=cluster, name=name,
                       log=self.paths.logs_dir / f".p{self.proposal}-array-{job_id}.out")
        self.jobs.append(job)
        for index, chunk in enumerate(chunks):
            for run in chunk:
                self.files[run].task = f"{job_id}_{index}"

    def _script(self, chunks: list[list[int]]) -> str:
        """The batch script: task ``i`` evaluates the runs of ``chunks[i]``."""
        head = process_log.header(self.proposal, "{run}",
                                  job_id="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}",
                                  cluster="${SLURM_CLUSTER_NAME:-default}",
                                  user="$(id -un)", host="$(hostname)")
        base = [self.python, "-m", "context_loader", "exec-runs", str(self.context_path),
                "--proposal", str(self.proposal), "--data", self.data, "--no-cluster"]
        for name in self.variables:
            base += ["--var", name]
        if self.stored_inputs:   # reprocess --stale, the proc pass: saved inputs are read
            base += ["--inputs-from-pattern", self.paths.run_file_pattern(self.proposal)]
        lines = ["#!/bin/bash", 'case "$SLURM_ARRAY_TASK_ID" in']
        for index, chunk in enumerate(chunks):
            cmd = list(base)
            for run in chunk:
                f = self.files[run]
                cmd += ["--task", str(run), str(f.fragment), str(f.report), str(f.log)]
            lines.append(f'{index}) exec {shlex.join(cmd)} --header "{head}" ;;')
        lines += ["esac", 'echo "no runs for array task $SLURM_ARRAY_TASK_ID" >&2', "exit 1"]
        return "\n".join(lines) + "\n"

    # -- following -------------------------------------------------------------------

    def ended(self, runs=None) -> Iterator[int]:
        """Yield each of ``runs`` (default: all of the array's) as it ends, in the order
        they end (a report written, or its task over without one), until all have; polls
        Slurm meanwhile. Raises :class:`SlurmError` when the controller cannot be asked
        for 10 minutes."""
        from context_loader.progress import progress_path

        pending = set(self.runs if runs is None else runs)
        tasks: dict[str, dict] = {}
        unknown_since = trouble_since = None
        while pending:
            try:
                tasks = self._task_states()
                trouble_since = None
                unknown_since = None if tasks else (unknown_since or time.monotonic())
            except SlurmError:
                trouble_since = trouble_since or time.monotonic()
                if time.monotonic() - trouble_since > 600:
                    raise
            now = time.monotonic()
            lost = unknown_since is not None and now - unknown_since > 60
            for run in sorted(pending):
                f = self.files[run]
                info = tasks.get(f.task) or {}
                state = LOST if lost else info.get("JobState")
                if f.report.exists():
                    self._tell_running(f, info)
                    pending.discard(run)
                    yield run
                    continue
                if state == "RUNNING" and progress_path(f.report).exists():
                    self._tell_running(f, info)
                if state in TERMINAL_STATES or state == LOST:
                    over = self._over.setdefault(f.task, now)
                    if now - over >= REPORT_GRACE or state == LOST:
                        f.end = self._task_end(f, state, info)
                        pending.discard(run)
                        yield run
            if pending:
                time.sleep(self.poll)

    def _task_states(self) -> dict[str, dict]:
        """``scontrol show job`` of every array: task id -> its fields, for the tasks
        Slurm still knows (pending ones listed as ranges are expanded)."""
        states = {}
        for job in self.jobs:
            proc = run_slurm(["scontrol", *job._cluster_opts(), "show", "job", job.job_id,
                              "-o"])
            if proc.returncode != 0 and "Invalid job id" in proc.stderr:
                continue
            if proc.returncode != 0:
                raise SlurmError(f"scontrol show job {job.job_id} failed: "
                                 f"{(proc.stderr or proc.stdout).strip()}")
            for line in proc.stdout.strip().splitlines():
                info = parse_job_line(line)
                for index in task_indices(info.get("ArrayTaskId", "")):
                    states[f"{info.get('ArrayJobId', job.job_id)}_{index}"] = info
        return states

    def _tell_running(self, f: RunFiles, info: dict) -> None:
        """Tell DAMNIT's GUI the run is running in its task, once (also when it was
        over before a poll saw it running)."""
        if self.on_state is None or f.running_told or not info:
            return
        f.running_told = True
        self.on_state(f.run, "RUNNING", hostname=info.get("NodeList", ""),
                      username=getpass.getuser(), slurm_cluster=self._cluster_of(f.task),
                      slurm_job_id=f.task)

    def _cluster_of(self, task: str) -> str | None:
        """The cluster of the array a task (``<array id>_<index>``) belongs to."""
        array_id = task.partition("_")[0]
        return next((j.cluster for j in self.jobs if j.job_id == array_id), None)

    def _task_output(self, task: str) -> Path:
        """Slurm's own output file of a task (``sbatch -o``)."""
        return self.paths.logs_dir / f".p{self.proposal}-array-{task}.out"

    def _task_end(self, f: RunFiles, state: str, info: dict) -> Ended:
        job = SlurmJob(job_id=f.task, cluster=self._cluster_of(f.task),
                       name=job_name(self.proposal, -1), log=f.log)
        end = JobEnd(job, state, info.get("ExitCode"), info)
        said = self._slurm_output(f.task)
        timed_out = state == "TIMEOUT"
        stopped = end.describe()
        if timed_out:
            stopped = (f"timed out: {stopped}; the task's limit is slurm_time "
                       f"({self.settings.slurm.time}) per run")
        return Ended(ok=False, stopped=stopped, timed_out=timed_out, keep_partial=False,
                     hint=f" (Slurm said: {said})" if said else "",
                     error_type=lambda message: JobFailed(message, end))

    def _slurm_output(self, task: str) -> str:
        """The last lines Slurm wrote to the task's own output (e.g. slurmstepd's
        ``CANCELLED`` or memory messages); :meth:`close` removes the file."""
        try:
            text = self._task_output(task).read_text(errors="replace").strip()
        except OSError:
            return ""
        return "; ".join(text.splitlines()[-3:])

    def task(self, run: int) -> ArrayTask:
        """The evaluator of ``run`` for :func:`.process_run.evaluate_and_store`, once
        :meth:`ended` has yielded it."""
        return ArrayTask(self, self.files[int(run)])

    # -- ending ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel every task of the array(s) (no error for ended ones)."""
        for job in self.jobs:
            try:
                run_slurm(["scancel", *job._cluster_opts(), job.job_id])
            except SlurmError:
                pass

    def _wait_until_stopped(self, timeout: float) -> None:
        """Wait until Slurm lists no task of the array as pending, running or completing
        (a cancelled task's processes are being killed), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = {info.get("JobState") for info in self._task_states().values()}
            except SlurmError:
                return
            if states <= TERMINAL_STATES:
                return
            time.sleep(min(self.poll, 0.2))

    def _discard_files(self) -> None:
        from context_loader.progress import progress_path

        for f in self.files.values():
            for path in (f.fragment, f.report, progress_path(f.report)):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Cancel the tasks still queued or running (waiting a little for Slurm to have
        stopped them), remove the files of runs never stored and Slurm's own outputs of
        the tasks."""
        if any(f.end is None and not f.report.exists() for f in self.files.values()):
            self.cancel()
            self._wait_until_stopped(CANCEL_WAIT)
        self._discard_files()
        for task in {f.task for f in self.files.values() if f.task}:
            self._task_output(task).unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def task_indices(text: str) -> list[int]:
    """Array task ids in ``scontrol``'s form: ``3``, ``2-5%2``, ``1,4,6-8``."""
    out = []
    for part in text.partition("%")[0].split(","):
        first, dash, last = part.partition("-")
        if first.isdigit():
            out.extend(range(int(first), int(last) + 1) if dash and last.isdigit()
                       else [int(first)])
    return out


class ArrayTask:
    """The :class:`~.evaluator.Evaluator` of one run of a :class:`SlurmArray`: its task
    has already ended; :meth:`run` says how."""

    #: A Slurm task is held to its own limits, not the folder's local ones.
    limits = None
    #: Never called: the array told DAMNIT's GUI the task's state when it saw it running.
    on_state = None

    def __init__(self, array: SlurmArray, files: RunFiles):
        self.array, self.files = array, files

    def header(self, request) -> None:
        return None   # the task writes its own, with the job id

    def fragment_for(self, request) -> Path:
        return self.files.fragment

    def run(self, request, *, fragment: Path, report: Path, log: Path, echo) -> Ended:
        f = self.files
        if echo is not None:   # what the task appended to the run's log
            with open(f.log, "rb") as log_file:
                log_file.seek(f.log_offset)
                echo.write(log_file.read().decode("utf-8", "replace"))
                echo.flush()
        if f.end is not None:
            return f.end
        try:
            written = json.loads(f.report.read_text())
        except (OSError, ValueError):
            written = {}
        if "variables" in written:
            return Ended(ok=True, duration=written.get("duration"))
        return Ended(ok=False, stopped=f"the evaluation of run {f.run} in Slurm job "
                                       f"{f.task} failed")
