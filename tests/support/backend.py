"""A real damnit-dagster backend for tests and benchmarks: ``dagster-daemon`` (and
optionally ``dagster-webserver``) serving one DAMNIT folder.

    with running_backend(damnit_dir, tmp_path / "home") as backend:
        backend.wait_for_sensor()                  # the event sensor has ticked once
        with backend.instance() as instance: ...   # the same Dagster instance

The daemon is ``python -m damnit_dagster.plugins.daemon`` (Dagster's daemon woken by the
inbox's events, as under ``listen``) unless ``stock_daemon=True``. The Dagster home gets
the project's ``dagster_home/dagster.yaml``, with ``instance_config`` merged over it (e.g. another
``run_launcher``). The processes run with ``DAGSTER_HOME`` and ``DAMNIT_DIR`` set (also
in this process while the backend runs, so :func:`damnit_dagster.plugins.home.inbox_path`
and ``damnit-dagster event`` find the same inbox), from the repository root with
``workspace.yaml``. Their output goes to ``daemon.log`` / ``webserver.log`` in the home;
on exit they are stopped (SIGTERM to their process group, SIGKILL after
``stop_timeout``). Like ``listen``, it holds the backend lock of the home while it runs
(and its status names the folder), so ``reprocess`` hands its work to this daemon.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from damnit_dagster.events.inbox import wake_address
from damnit_dagster.ops.backend import backend_lock, write_status
from damnit_dagster.plugins.home import inbox_path

#: The repository (benchmarks/ import this module from tests/support as ``backend``, so it
#: needs nothing else of ``support``).
REPO = Path(__file__).resolve().parents[2]

BIN = Path(sys.executable).parent


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` recursively (mappings merge, other values replace)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_instance_config(home: Path, instance_config: dict | None = None) -> Path:
    """``home/dagster.yaml``: the project's instance config with ``instance_config`` merged in."""
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    path = home / "dagster.yaml"
    path.write_text(yaml.safe_dump(merge(config, instance_config or {}), sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Backend:
    """The running backend: its Dagster home, DAMNIT folder, processes and URL."""

    home: Path
    damnit_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    url: str | None = None

    def instance(self):
        """A :class:`dagster.DagsterInstance` on the backend's home (use as a context manager)."""
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))

    def log(self, name: str = "daemon") -> str:
        """The output of a process so far (for failure messages)."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check_alive(self) -> None:
        """Raise with the log if a process has exited."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")

    def wait_for_sensor(self, timeout: float = 120) -> None:
        """Wait until the daemon has evaluated a sensor of the location at least once."""
        from damnit_dagster.plugins.dagster_private import InstigatorType

        deadline = time.monotonic() + timeout
        with self.instance() as instance:
            while time.monotonic() < deadline:
                self.check_alive()
                for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
                    if instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1):
                        return
                time.sleep(0.2)
        raise TimeoutError(f"no sensor tick within {timeout} s:\n{self.log()[-4000:]}")

    def wait_for_webserver(self, timeout: float = 120) -> None:
        """Wait until the webserver answers on :attr:`url`."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                urllib.request.urlopen(f"{self.url}/server_info", timeout=2).close()
                return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"webserver not up within {timeout} s:\n{self.log('webserver')[-4000:]}")


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running_backend(damnit_dir, home, *, instance_config: dict | None = None,
                    webserver: bool = False, stock_daemon: bool = False,
                    env: dict | None = None, stop_timeout: float = 30):
    """Run the daemon (and ``dagster-webserver`` if asked) for ``damnit_dir`` with Dagster
    home ``home``; yields a :class:`Backend`.

    The daemon is ``python -m damnit_dagster.plugins.daemon`` (woken by events), or the stock
    ``dagster-daemon`` with ``stock_daemon=True``.
    """
    home, damnit_dir = Path(home).absolute(), Path(damnit_dir).absolute()
    write_instance_config(home, instance_config)
    settings = {"DAGSTER_HOME": str(home), "DAMNIT_DIR": str(damnit_dir)}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    full_env = {**os.environ, "MPLBACKEND": "Agg",
                "DAMNIT_WAKE_ADDRESS": wake_address(inbox_path()), **(env or {})}
    backend = Backend(home, damnit_dir)
    with backend.instance() as instance:   # create the storage once, before the processes race
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("none")
        instance.all_instigator_state()
    daemon = [str(BIN / "dagster-daemon")] if stock_daemon else [sys.executable, "-m",
                                                                  "damnit_dagster.plugins.daemon"]
    commands = {"daemon": [*daemon, "run", "-w", str(REPO / "workspace.yaml")]}
    if webserver:
        port = free_port()
        backend.url = f"http://127.0.0.1:{port}"
        commands["webserver"] = [str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"),
                                 "-h", "127.0.0.1", "-p", str(port)]
    lock = backend_lock()     # as `listen` holds it: commands see a running backend
    lock.acquire(timeout=0)
    write_status(home, folder=str(damnit_dir), state="ready", url=backend.url)
    try:
        for name, cmd in commands.items():
            with open(home / f"{name}.log", "ab") as log:
                backend.processes[name] = subprocess.Popen(
                    cmd, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
        yield backend
    finally:
        for proc in backend.processes.values():
            _stop(proc, stop_timeout)
        lock.release()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
