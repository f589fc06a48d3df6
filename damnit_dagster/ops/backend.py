"""The backend of one DAMNIT folder: what ``damnit-dagster listen`` runs.

Three Dagster processes share one code location:

* a code server (``dagster code-server start``) that loads the definitions of the folder;
* the webserver (the UI, on 127.0.0.1), and
* the daemon (sensors, run queue, backfills),

plus threads of ours: the Kafka bridge (only when ``kafka_brokers`` is set with
``db-config``) that stores migration/calibration events in the inbox, the context watcher
that reloads the code location when ``context.py`` changes, and the activity log
(:mod:`.activity`). Stopping the backend (SIGTERM, Ctrl-C, ``supervisorctl stop damnit``)
stops all of them.

Each folder's backend uses the folder's own Dagster instance (:mod:`.instance`), and holds
that instance's backend lock while it runs; its status file (``backend.json`` there) says
which folder it serves, whether it is ready, and why it could not start. The Dagster
processes log to the instance's ``backend_logs/`` folder; the backend's own output (``amore.log``
under Supervisor) is for people: start, stop, events, finished runs and errors.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from filelock import FileLock, Timeout

from damnit_dagster.events.inbox import EventInbox, wake_address
from damnit_dagster.events.kafka import run_bridge
from damnit_dagster.ops import supervisor
from damnit_dagster.ops.activity import ActivityLog, follow
from damnit_dagster.ops.reload import watch
from damnit_dagster.plugins.home import (
    dagster_home,
    inbox_path,
    logs_dir,
    prepare_instance,
    use_instance_of,
)
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.leftovers import remove_stale

log = logging.getLogger("damnit")

LOCATION = "damnit"
BIN = Path(sys.executable).parent
#: Dagster's daemon woken by events and the warm run launcher
#: (damnit_dagster.plugins.daemon).
DAEMON = [sys.executable, "-m", "damnit_dagster.plugins.daemon"]
#: The exit status of a backend that cannot start for a reason a restart does not fix
#: (``EX_CONFIG``); Supervisor is told not to restart it.
EXIT_CANNOT_START = 78
#: The backend's status file in its Dagster instance.
STATUS_FILE = "backend.json"

_DAEMON_HEALTH = '{ instance { daemonHealth { daemonStatus(daemonType: "SENSOR") { healthy } } } }'


class BackendCannotStart(RuntimeError):
    """The backend cannot start; the message says why, in one line."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    """True when something on 127.0.0.1 already listens on ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def write_workspace(home: Path, code_server_port: int) -> Path:
    """A workspace file pointing the webserver and daemon at our code server."""
    path = home / "workspace.yaml"
    path.write_text("load_from:\n  - grpc_server:\n"
                    f"      host: 127.0.0.1\n      port: {code_server_port}\n"
                    f"      location_name: {LOCATION}\n")
    return path


def last_line(path: Path) -> str:
    """The last non-empty line of a log file ('' if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Wait until something listens on ``port``; fail clearly if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BackendCannotStart(_exited(process, what))
        if port_in_use(port):
            return
        time.sleep(0.2)
    raise BackendCannotStart(f"{what} did not start listening on port {port} in {timeout:.0f} s")


def _exited(process: subprocess.Popen, what: str) -> str:
    reason = last_line(Path(process.log_path)) if getattr(process, "log_path", None) else ""
    return (f"{what} exited with status {process.returncode}"
            + (f": {reason}" if reason else "")
            + (f" (log: {process.log_path})" if getattr(process, "log_path", None) else ""))


def read_status(home: Path | None = None) -> dict:
    """The status a backend of this instance last wrote ({} if none)."""
    try:
        return json.loads(((home or dagster_home()) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_status(home: Path, **status) -> None:
    """Replace the backend's status file atomically."""
    tmp = home / f".{STATUS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({**status, "pid": os.getpid(), "time": time.time()}))
    os.replace(tmp, home / STATUS_FILE)


@dataclass
class Backend:
    """The running processes and threads of one folder's backend."""

    damnit_dir: Path
    home: Path
    port: int
    processes: list[subprocess.Popen]
    stop_event: threading.Event
    threads: list[threading.Thread]
    lock: FileLock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_ready(self, timeout: float = 180) -> None:
        """Block until the webserver answers and the daemon's sensor loop has ticked."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = requests.post(f"{self.url}/graphql", json={"query": _DAEMON_HEALTH},
                                  timeout=5)
                if r.ok and r.json()["data"]["instance"]["daemonHealth"]["daemonStatus"]["healthy"]:
                    return
            except (requests.RequestException, KeyError, TypeError, ValueError):
                pass
            time.sleep(0.5)
        raise BackendCannotStart(f"the Dagster UI and daemon were not up at {self.url} "
                                 f"after {timeout:.0f} s (logs: {logs_dir()})")

    def check_alive(self) -> None:
        """Raise :class:`RuntimeError` naming the process that has exited, and why."""
        for p in self.processes:
            if p.poll() is not None:
                raise RuntimeError(_exited(p, p.what))

    def stop(self) -> None:
        """Stop the threads, then each process with its children (SIGTERM, SIGKILL after 20 s)."""
        self.stop_event.set()
        for p in reversed(self.processes):
            _signal_group(p, signal.SIGTERM)
        for p in reversed(self.processes):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()
            _signal_group(p, signal.SIGKILL)  # leftovers such as the code server's child
        for t in self.threads:
            t.join(10)
        self.lock.release()


def _signal_group(process: subprocess.Popen, signum) -> None:
    """Signal the process group a backend process leads (it started its own session)."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _spawn(what: str, name: str, args, **kwargs) -> subprocess.Popen:
    """Start a backend process in its own session (so stopping it stops its children),
    its output to ``backend_logs/<name>.log`` of the instance (the previous one kept as ``.1``)."""
    path = logs_dir() / f"{name}.log"
    if path.exists():
        os.replace(path, path.with_suffix(".log.1"))
    with open(path, "ab") as out:
        process = subprocess.Popen([str(a) for a in args], start_new_session=True,
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, **kwargs)
    process.what, process.log_path = what, path
    return process


def backend_env(damnit_dir: Path) -> dict:
    """Environment of the Dagster processes: the folder, the instance, and the doorbell the
    inbox rings for the daemon (:mod:`damnit_dagster.plugins.wakeup`)."""
    return {**os.environ, "DAMNIT_DIR": str(damnit_dir), "DAGSTER_HOME": str(dagster_home()),
            "DAMNIT_WAKE_ADDRESS": wake_address(inbox_path())}


def _take_lock(damnit_dir: Path, home: Path) -> FileLock:
    lock = backend_lock()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        status = read_status(home)
        if Path(status.get("folder", "")) == damnit_dir:
            raise BackendCannotStart(f"a backend of {damnit_dir} already runs "
                                     f"(pid {status.get('pid')})") from None
        raise BackendCannotStart(
            f"the Dagster instance {home} already serves the backend of "
            f"{status.get('folder', 'another folder')}; unset DAGSTER_HOME so that each "
            f"folder uses its own instance") from None
    return lock


def start(damnit_dir, *, port: int | None = None, watch_interval: float = 2.0) -> Backend:
    """Start the backend of ``damnit_dir`` and return once its processes are launched.

    Raises :class:`BackendCannotStart` with the reason in one line.
    """
    paths = DamnitPaths(damnit_dir)
    with DamnitDB(paths.db_file) as db:
        db_id, proposal = db.db_id, db.proposal
        brokers = db.metameta.get("kafka_brokers")
    home = use_instance_of(paths.root)
    lock = _take_lock(paths.root, home)
    stale = remove_stale(paths, proposal)
    if stale:
        log.info("removed %d file(s) left in %s by evaluations that died", len(stale),
                 paths.extracted_dir)
    processes: list[subprocess.Popen] = []
    stop_event, threads = threading.Event(), []
    backend = Backend(paths.root, home, 0, processes, stop_event, threads, lock)
    try:
        if port and port_in_use(port):
            raise BackendCannotStart(f"port {port} of the Dagster UI is in use by another "
                                     f"program: choose another with --port")
        backend.port = port or free_port()
        write_status(home, folder=str(paths.root), state="starting", url=backend.url)
        prepare_instance()
        env = backend_env(paths.root)
        code_port = free_port()
        workspace = write_workspace(home, code_port)
        processes.append(_spawn(
            "the Dagster code server", "code-server",
            [BIN / "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", code_port,
             "-m", "damnit_dagster.defs.definitions", "-a", "defs", "--location-name", LOCATION,
             "--log-format", "json"],
            env=env, cwd=paths.root))
        wait_for_port(code_port, processes[0], "the Dagster code server")
        processes.append(_spawn(
            "the Dagster webserver", "webserver",
            [BIN / "dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", backend.port,
             "--log-format", "json"],
            env=env, cwd=paths.root))
        processes.append(_spawn(
            "the Dagster daemon", "daemon",
            [*DAEMON, "run", "-w", workspace, "--log-level", "warning", "--log-format", "json"],
            env=env, cwd=paths.root))
        threads.append(threading.Thread(
            target=watch, name="context-watcher", daemon=True,
            args=(paths.root, backend.url, LOCATION),
            kwargs=dict(interval=watch_interval, stop=stop_event)))
        if brokers:
            threads.append(threading.Thread(
                target=run_bridge, name="kafka-bridge", daemon=True,
                args=([b.strip() for b in str(brokers).split(",")], EventInbox(inbox_path())),
                kwargs=dict(group_id=f"damnit-dagster-{db_id}", stop=stop_event)))
        for t in threads:
            t.start()
    except BaseException:
        backend.stop()
        raise
    return backend


def backend_lock() -> FileLock:
    """Held by a running backend (``listen``) for its whole life, in its Dagster instance."""
    return FileLock(dagster_home() / "backend.lock")


def backend_running(damnit_dir) -> bool:
    """True while the backend (``listen``/``serve``) of ``damnit_dir`` runs on this
    process's Dagster instance: its daemon executes backfills and queued runs."""
    lock = backend_lock()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return Path(read_status().get("folder", "")) == Path(damnit_dir).absolute()
    lock.release()
    return False


def _follow_activity(backend: Backend, proposal: int) -> None:
    """Start logging events and finished runs (see :mod:`.activity`)."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(backend.home))
    activity = ActivityLog(EventInbox(inbox_path()), proposal, instance)
    thread = threading.Thread(target=follow, name="activity-log", daemon=True,
                              args=(activity, backend.stop_event))
    backend.threads.append(thread)
    thread.start()


def run_forever(damnit_dir, *, port: int | None = None) -> int:
    """``damnit-dagster listen``: run the backend until SIGTERM/SIGINT or a process dies.

    Returns the exit status: 0 when stopped, :data:`EXIT_CANNOT_START` when it could not
    start (the reason logged in one line and kept in the status file), 1 when a process
    died later (a restart may help).
    """
    started = time.monotonic()
    damnit_dir = Path(damnit_dir).absolute()
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("starting the backend of %s", damnit_dir)
    try:
        backend = start(damnit_dir, port=port)
    except BackendCannotStart as e:
        return _cannot_start(damnit_dir, str(e), started, own_status=False)
    try:
        try:
            backend.wait_until_ready()
        except (BackendCannotStart, RuntimeError) as e:
            return _cannot_start(damnit_dir, str(e), started)
        with DamnitDB(DamnitPaths(damnit_dir).db_file) as db:
            proposal = db.proposal
        _follow_activity(backend, proposal)
        write_status(backend.home, folder=str(damnit_dir), state="ready", url=backend.url)
        log.info("backend of %s (p%s) ready: Dagster UI at %s", damnit_dir, proposal,
                 backend.url)
        while not stopping.wait(1):
            try:
                backend.check_alive()
            except RuntimeError as e:
                log.error("the backend stops: %s", e)
                write_status(backend.home, folder=str(damnit_dir), state="failed", reason=str(e))
                return 1
        log.info("backend of %s stopping", damnit_dir)
        write_status(backend.home, folder=str(damnit_dir), state="stopped")
        return 0
    finally:
        backend.stop()
        log.info("backend of %s stopped", damnit_dir)


def _cannot_start(damnit_dir: Path, reason: str, started: float, *, own_status: bool = True) -> int:
    """Log why the backend cannot start, in one line, and return :data:`EXIT_CANNOT_START`.

    Lives past Supervisor's ``startsecs`` first, so that the exit status (not an early
    death, which Supervisor retries) says not to restart.
    """
    log.error("the backend of %s cannot start: %s", damnit_dir, reason)
    if own_status:
        write_status(dagster_home(damnit_dir), folder=str(damnit_dir), state="failed",
                     reason=reason)
    time.sleep(max(0.0, supervisor.STARTSECS + 0.5 - (time.monotonic() - started)))
    return EXIT_CANNOT_START
