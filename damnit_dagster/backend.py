"""The backend of one DAMNIT folder: what ``damnit-dagster listen`` runs.

Three Dagster processes share one code location:

* a code server (``dagster code-server start``) that loads the definitions of the folder;
* the webserver (the UI, on 127.0.0.1), and
* the daemon (sensors, run queue, backfills),

plus two threads of ours: the Kafka bridge (only when ``kafka_brokers`` is set with
``db-config``) that stores migration/calibration events in the inbox, and the context
watcher that reloads the code location when ``context.py`` changes. Stopping the backend
(SIGTERM, Ctrl-C, ``supervisorctl stop damnit``) stops all of them.
"""
from __future__ import annotations

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

from .events.inbox import EventInbox
from .events.kafka import run_bridge
from .instance import dagster_home, inbox_path, prepare_instance
from .reload import watch
from .storage.database import DamnitDB
from .storage.layout import DamnitPaths

log = logging.getLogger(__name__)

LOCATION = "damnit"
BIN = Path(sys.executable).parent
#: Dagster's daemon with a faster sensor loop and the warm run launcher (damnit_dagster.daemon).
DAEMON = [sys.executable, "-m", "damnit_dagster.daemon"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_workspace(home: Path, code_server_port: int) -> Path:
    """A workspace file pointing the webserver and daemon at our code server."""
    path = home / "workspace.yaml"
    path.write_text("load_from:\n  - grpc_server:\n"
                    f"      host: 127.0.0.1\n      port: {code_server_port}\n"
                    f"      location_name: {LOCATION}\n")
    return path


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Wait until something listens on ``port``; fail clearly if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start listening on port {port} in {timeout:.0f} s")


@dataclass
class Backend:
    """The running processes and threads of one folder's backend."""

    damnit_dir: Path
    port: int
    processes: list[subprocess.Popen]
    stop_event: threading.Event
    threads: list[threading.Thread]
    lock: FileLock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_ready(self, timeout: float = 180) -> None:
        """Block until the webserver answers and the code location has loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = requests.get(f"{self.url}/server_info", timeout=2)
                if r.ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the Dagster webserver did not answer at {self.url}")

    def check_alive(self) -> None:
        for p in self.processes:
            if p.poll() is not None:
                raise RuntimeError(f"{' '.join(p.args[:3])} exited with status {p.returncode}")

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


def _spawn(args, **kwargs) -> subprocess.Popen:
    """Start a backend process in its own session, so stopping it stops its children."""
    return subprocess.Popen([str(a) for a in args], start_new_session=True, **kwargs)


def backend_env(damnit_dir: Path) -> dict:
    """Environment of the Dagster processes: the folder and the instance."""
    return {**os.environ, "DAMNIT_DIR": str(damnit_dir), "DAGSTER_HOME": str(dagster_home())}


def start(damnit_dir, *, port: int | None = None, watch_interval: float = 2.0) -> Backend:
    """Start the backend of ``damnit_dir`` and return once its processes are launched."""
    paths = DamnitPaths(damnit_dir)
    with DamnitDB(paths.db_file) as db:
        proposal = db.proposal
        brokers = db.metameta.get("kafka_brokers")
    home = prepare_instance()
    env = backend_env(paths.root)
    code_port, port = free_port(), port or free_port()
    workspace = write_workspace(home, code_port)
    processes: list[subprocess.Popen] = []
    stop_event, threads = threading.Event(), []
    lock = backend_lock()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RuntimeError(f"a backend already runs on the Dagster instance {home} "
                           f"(lock {lock.lock_file})") from None
    backend = Backend(paths.root, port, processes, stop_event, threads, lock)
    try:
        processes.append(_spawn(
            [BIN / "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", code_port,
             "-m", "damnit_dagster.definitions", "-a", "defs", "--location-name", LOCATION],
            env=env, cwd=paths.root))
        wait_for_port(code_port, processes[0], "the Dagster code server")
        processes.append(_spawn(
            [BIN / "dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", port],
            env=env, cwd=paths.root))
        processes.append(_spawn([*DAEMON, "run", "-w", workspace],
                                env=env, cwd=paths.root))
        threads.append(threading.Thread(
            target=watch, name="context-watcher", daemon=True,
            args=(paths.root, backend.url, LOCATION),
            kwargs=dict(interval=watch_interval, stop=stop_event)))
        if brokers:
            threads.append(threading.Thread(
                target=run_bridge, name="kafka-bridge", daemon=True,
                args=([b.strip() for b in str(brokers).split(",")], EventInbox(inbox_path())),
                kwargs=dict(group_id=f"damnit-dagster-p{proposal}", stop=stop_event)))
        for t in threads:
            t.start()
    except BaseException:
        backend.stop()
        raise
    return backend


def backend_lock() -> FileLock:
    """Held by a running backend (``listen``) for its whole life, in ``DAGSTER_HOME``."""
    return FileLock(dagster_home() / "backend.lock")


def backend_running() -> bool:
    """True while a backend (``listen``/``serve``) of this ``DAGSTER_HOME`` runs: its
    daemon executes backfills and queued runs."""
    lock = backend_lock()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def run_forever(damnit_dir, *, port: int | None = None) -> None:
    """``damnit-dagster listen``: run the backend until SIGTERM/SIGINT or a process dies."""
    backend = start(damnit_dir, port=port)
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        backend.wait_until_ready()
        log.info("Backend of %s: Dagster UI at %s", backend.damnit_dir, backend.url)
        print(f"Dagster UI: {backend.url}", flush=True)
        while not stopping.wait(1):
            backend.check_alive()
    finally:
        backend.stop()
