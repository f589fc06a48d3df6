"""A run launcher that starts each Dagster run from a warm, pre-imported process.

Dagster's default launcher asks the code server to *spawn* a fresh Python process per run,
which imports Dagster, loads the code location and later the scientific stack (extra_data,
xarray, h5py, EXtra components, matplotlib): seconds before the first variable is
evaluated (see benchmarks/results.md). :class:`ForkServerRunLauncher` keeps one *zygote*
process that has already imported all of that and forks a child per run, which runs
Dagster's standard run worker body (the one ``dagster api execute_run`` uses): it loads
the code location from the run's origin (so a changed ``context.py`` is seen), reports
"Started process for run", executes the run and writes its events and compute logs to
the instance as usual. The zygote also serves :data:`SERVICES`: evaluations of live runs
started when their event arrives (``execution/head_start.py``), forked from it too.

Dagster semantics kept: run status and events come from the run worker itself; runs with
a negative run-queue priority (``dagster/priority``, reprocessing) run niced, so that
their evaluations leave the CPU to live runs first; ``terminate`` sends SIGINT to the
worker (Dagster turns it into a cancelled run, as the code server's termination does);
run monitoring asks :meth:`check_run_worker_health`, which looks at the worker's pid
(tagged on the run as ``damnit/worker``). The zygote is started on the first launch
(``python -m damnit_dagster.plugins.daemon`` starts it with the daemon, see
:meth:`ForkServerRunLauncher.prewarm`), restarted if it died, and exits when the
launching process exits. Children stay in the zygote's process group, so stopping the
backend's process group stops them too.

Instance configuration (``dagster.yaml``)::

    run_launcher:
      module: damnit_dagster.plugins.launcher
      class: ForkServerRunLauncher
"""
from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import serialize_value

from damnit_dagster.plugins.dagster_private import (
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
    check,
)
from damnit_dagster.plugins.processes import exit_with, process_start_time

log = logging.getLogger(__name__)

#: Niceness of the workers of low-priority runs (reprocessing next to live runs): the
#: lowest, so that a live run's evaluation and store take the CPU whenever they need it;
#: alone, a reprocess still gets every idle cycle.
LOW_PRIORITY_NICE = 19
#: Run tag holding ``"<pid>:<start time>"`` of the run's worker process.
WORKER_TAG = "damnit/worker"
#: What the zygote imports before forking (a module that fails to import is skipped).
DEFAULT_PRELOAD = (
    "dagster._cli.api", "dagster._core.execution.api", "dagster._core.executor.in_process",
    "dagster._core.execution.plan.execute_plan", "dagster._daemon.monitoring",
    "damnit_dagster.defs.definitions", "damnit_ctx", "context_loader.runner",
    "damnit_dagster.storage.writer", "extra_data", "xarray", "h5py", "h5netcdf",
    "extra.components", "matplotlib.pyplot", "damnit_dagster.execution.forked",
)
#: ``module:function`` the zygote calls once its modules are imported (if that module is):
#: the renderer's warm-up, and the folder's context file loaded for the run workers.
WARM_UPS = ("context_loader.runner:warm_up", "damnit_dagster.execution.forked:warm_up_folder")
#: ``module:function(close_in_child)`` the zygote calls once warm: each gives a service
#: (``fileno()``, ``handle()``; its children close ``close_in_child``) or None.
SERVICES = ("damnit_dagster.execution.head_start:serve",)
#: ``module:function`` a run worker calls before it exits: GUI messages still queued go.
AT_EXIT = ("damnit_dagster.events.gui_updates:flush_all",)
#: ``module:function`` the zygote calls before its preload: the science stack's first
#: import, under the host-wide lock that code servers take too.
FIRST_IMPORT = "damnit_dagster.execution.science_import:import_science_stack"


def low_priority_nice(tags: Mapping[str, str]) -> int:
    """The niceness of a run's worker (and its evaluations): :data:`LOW_PRIORITY_NICE` for
    a run with a negative ``dagster/priority`` (reprocessing), so that live runs get the
    CPU first; 0 otherwise."""
    try:
        return LOW_PRIORITY_NICE if int(tags.get("dagster/priority", 0)) < 0 else 0
    except ValueError:
        return 0


# --------------------------------------------------------------------------- zygote side

def _run_worker(run_id: str, instance_ref_json: str) -> int:
    """In a forked child: Dagster's own run worker body for ``run_id``."""
    from dagster import DagsterInstance, deserialize_value

    from damnit_dagster.plugins.dagster_private import capture_interrupts, execute_run_command_body

    with capture_interrupts():
        with DagsterInstance.from_ref(deserialize_value(instance_ref_json)) as instance:
            return execute_run_command_body(run_id, instance, lambda event: None,
                                             set_exit_code_on_failure=False)


def _fork_run(request: dict) -> int:
    """Fork a child that runs one Dagster run; returns its pid (in the zygote)."""
    pid = os.fork()
    if pid:
        return pid

    def run() -> int:   # a normal process again, then the run
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in _FDS:
            os.close(fd)
        if request.get("nice"):
            os.nice(request["nice"])
        try:
            return _run_worker(request["run_id"], request["instance_ref"])
        finally:
            for hook in AT_EXIT:
                try:
                    _call(hook)
                except Exception as e:  # the run is over: only report it
                    print(f"damnit_dagster.plugins.launcher: {hook}: {e}", file=sys.stderr)

    exit_with(run)


_FDS: list[int] = []


def _cache_alembic_scripts() -> None:
    """Read each Alembic script directory once in this process.

    Opening a Dagster SQLite storage compares the database's schema revision with the head
    of Dagster's migration scripts, and Alembic finds that head by executing all the
    migration files again, for each of the three storages, in every run worker. The
    scripts are part of the installed Dagster and cannot change while this process lives,
    so their parsed directory is kept (children forked from here inherit it).
    """
    from alembic.script import ScriptDirectory

    original = ScriptDirectory.from_config.__func__
    cache: dict = {}

    def from_config(cls, config):
        key = config.get_main_option("script_location")
        if key not in cache:
            cache[key] = original(cls, config)
        return cache[key]

    ScriptDirectory.from_config = classmethod(from_config)


def _warm_up(instance_ref_json: str) -> None:
    """Open the instance once (importing its storages, compute log manager...) and close it
    again, so that no connection is shared with the children."""
    from dagster import DagsterInstance, deserialize_value

    _cache_alembic_scripts()
    with DagsterInstance.from_ref(deserialize_value(instance_ref_json)) as instance:
        instance.get_run_records(limit=1)
        instance.compute_log_manager  # noqa: B018 - imported and configured here


def _call(hook: str) -> None:
    module, function = hook.split(":")
    getattr(importlib.import_module(module), function)()


def zygote_main(request_fd: int, answer_fd: int, preload: Sequence[str]) -> None:
    """The zygote: import ``preload``, then fork a run worker per request line.

    The first line on ``request_fd`` is ``{"warm_up": instance_ref}``; then each request
    is a JSON line ``{"run_id", "instance_ref"}`` answered on ``answer_fd`` with
    ``{"pid", "start"}`` or ``{"error"}``. Exits at end of input.
    """
    _FDS[:] = [request_fd, answer_fd]
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # a Ctrl-C is for the runs, not us
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # finished children are reaped by the kernel
    _call(FIRST_IMPORT)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception as e:  # an optional module missing here: fork without it
            print(f"damnit_dagster.plugins.launcher: not preloading {name}: {e}", file=sys.stderr)
    for hook in WARM_UPS:  # what evaluations would load lazily, too
        if hook.split(":")[0] in sys.modules:
            _call(hook)
    requests, answers = os.fdopen(request_fd, "r"), os.fdopen(answer_fd, "w")
    first = requests.readline()
    if not first:
        return
    try:
        _warm_up(json.loads(first)["warm_up"])
    except Exception as e:  # the children will meet the problem again and report it
        print(f"damnit_dagster.plugins.launcher: warm-up failed: {type(e).__name__}: {e}",
              file=sys.stderr)
    services = _start_services()
    gc.collect()
    gc.freeze()   # the preloaded objects are never collected: children keep them shared
    answers.write(json.dumps({"ready": os.getpid()}) + "\n")
    answers.flush()
    while True:   # one request line at a time: the launcher waits for each answer
        ready, _, _ = select.select([requests, *services], [], [])
        for source in ready:
            if source is not requests:
                source.handle()
                continue
            line = requests.readline()
            if not line:
                return
            try:
                pid = _fork_run(json.loads(line))
                answer = {"pid": pid, "start": process_start_time(pid)}
            except Exception as e:
                answer = {"error": f"{type(e).__name__}: {e}"}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()


def _start_services() -> list:
    """The :data:`SERVICES` that start; their descriptors are closed in run workers."""
    services = []
    for hook in SERVICES:
        module, function = hook.split(":")
        try:
            service = getattr(importlib.import_module(module), function)(tuple(_FDS))
        except Exception as e:  # the runs do without it
            print(f"damnit_dagster.plugins.launcher: not serving {hook}: {e}", file=sys.stderr)
            continue
        if service is not None:
            services.append(service)
            _FDS.append(service.fileno())
    return services


# --------------------------------------------------------------------------- launcher side

class Zygote:
    """A running zygote process and its two pipes (used under the launcher's lock)."""

    def __init__(self, python: str, preload: Sequence[str], instance_ref_json: str,
                 start_timeout: float):
        req_r, self._req_w = os.pipe()
        self._ans_r, ans_w = os.pipe()
        cmd = [python, "-m", "damnit_dagster.plugins.launcher", "--zygote", str(req_r), str(ans_w),
               *preload]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(),
                                        pass_fds=(req_r, ans_w))
        os.close(req_r)
        os.close(ans_w)
        self._requests = os.fdopen(self._req_w, "w")
        self._answers = os.fdopen(self._ans_r, "r")
        self._requests.write(json.dumps({"warm_up": instance_ref_json}) + "\n")
        self._requests.flush()
        self.python = python
        self._start_timeout = start_timeout
        self.ready = False

    def _read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self._answers], [], [], timeout)
        line = self._answers.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the run worker zygote ({self.python}) "
                               + ("exited" if ready else f"did not answer within {timeout:.0f} s")
                               + f" (status {self.process.poll()})")
        return json.loads(line)

    def wait_ready(self) -> None:
        """Wait until the zygote has imported everything."""
        if not self.ready:
            self._read(self._start_timeout)
            self.ready = True

    def fork(self, run_id: str, instance_ref_json: str, nice: int = 0) -> dict:
        """Ask for a run worker (at niceness ``nice``); returns ``{"pid", "start"}``."""
        self.wait_ready()
        self._requests.write(json.dumps({"run_id": run_id, "instance_ref": instance_ref_json,
                                         "nice": nice}) + "\n")
        self._requests.flush()
        answer = self._read(60)
        if "error" in answer:
            raise RuntimeError(f"the run worker zygote could not fork: {answer['error']}")
        return answer

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        for f in (self._requests, self._answers):
            try:
                f.close()
            except OSError:
                pass


#: The zygotes of this process by interpreter, and the lock serialising their use. A
#: zygote exits when this process does (end of its input).
_ZYGOTES: dict[str, Zygote] = {}
_LOCK = threading.Lock()


class ForkServerRunLauncher(RunLauncher, ConfigurableClass):
    """Launch each run as a fork of a warm process that already imported everything."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, *,
                 preload: Sequence[str] = DEFAULT_PRELOAD, start_timeout: float = 180):
        self._inst_data = inst_data
        self._preload = tuple(preload)
        self._start_timeout = start_timeout
        super().__init__()

    # -- configuration
    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls):
        from dagster import Array, Field, Noneable

        return {
            "preload": Field(Noneable(Array(str)), is_required=False,
                             description="Modules the warm process imports (default: Dagster, "
                                         "damnit_dagster, context_loader and the science stack)."),
            "start_timeout": Field(float, is_required=False, default_value=180.0,
                                   description="Seconds the warm process may take to start."),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        config = dict(config_value)
        if config.get("preload") is None:
            config.pop("preload", None)
        return cls(inst_data=inst_data, **config)

    # -- zygotes (one per interpreter, shared by the launchers of this process)
    def _zygote(self, python: str) -> Zygote:
        zygote = _ZYGOTES.get(python)
        if zygote is None or not zygote.alive():
            if zygote is not None:
                log.warning("Run worker zygote for %s exited (%s); starting a new one", python,
                            zygote.process.returncode)
                zygote.close()
            zygote = _ZYGOTES[python] = Zygote(
                python, self._preload, serialize_value(self._instance.get_ref()),
                self._start_timeout)
        return zygote

    def prewarm(self, python: str = sys.executable, wait: bool = False) -> None:
        """Start the warm process now (in the background unless ``wait``), so that the
        first run does not wait for its imports."""
        def warm():
            with _LOCK:
                try:
                    self._zygote(python).wait_ready()
                except RuntimeError as e:
                    log.warning("%s", e)

        if wait:
            warm()
        else:
            threading.Thread(target=warm, name="damnit-zygote-prewarm", daemon=True).start()

    # -- RunLauncher
    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = check.not_none(run.job_code_origin, f"run {run.run_id} has no code origin")
        instance_ref = serialize_value(check.not_none(self._instance.get_ref()))
        nice = low_priority_nice(run.tags)
        t0 = time.perf_counter()
        with _LOCK:
            try:
                worker = self._zygote(origin.executable_path).fork(run.run_id, instance_ref, nice)
            except RuntimeError:  # a zygote that died between runs: one fresh attempt
                _ZYGOTES.pop(origin.executable_path).close()
                worker = self._zygote(origin.executable_path).fork(run.run_id, instance_ref, nice)
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: f"{worker['pid']}:{worker['start']}"})
        self._instance.report_engine_event(
            f"Forked run worker (pid {worker['pid']}) from the warm process in "
            f"{time.perf_counter() - t0:.2f} s.", run, cls=self.__class__)

    def _worker(self, run_id: str) -> tuple[int, str] | None:
        run = self._instance.get_run_by_id(run_id)
        tag = run.tags.get(WORKER_TAG) if run else None
        if not tag:
            return None
        pid, start = tag.split(":", 1)
        return int(pid), start

    def _alive(self, worker: tuple[int, str]) -> bool:
        return process_start_time(worker[0]) == worker[1]

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        worker = self._worker(run_id)
        if worker is None or not self._alive(worker):
            self._instance.report_engine_event(
                "Run worker not found; it may have exited already.", run, cls=self.__class__)
            return False
        os.kill(worker[0], signal.SIGINT)   # Dagster's interrupt: the run ends as CANCELED
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        worker = self._worker(run.run_id)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, "no run worker recorded")
        if self._alive(worker):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(worker[0]))
        return CheckRunHealthResult(WorkerStatus.FAILED,
                                    f"run worker process {worker[0]} is gone",
                                    run_worker_id=str(worker[0]))



if __name__ == "__main__":
    if sys.argv[1:2] != ["--zygote"] or len(sys.argv) < 4:
        sys.exit("usage: python -m damnit_dagster.plugins.launcher --zygote REQUEST_FD "
                 "ANSWER_FD [MODULE...]")
    zygote_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
