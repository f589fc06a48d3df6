"""Run the backend under Supervisor, with a ``supervisord.conf`` in the DAMNIT folder.

As in DAMNIT, one Supervisor daemon per DAMNIT folder runs one program, ``damnit`` (our
``damnit-dagster listen``, which starts the Dagster webserver, daemon, Kafka bridge and
context watcher as its own children). Users control it from the folder with::

    supervisorctl -c supervisord.conf status damnit
    supervisorctl -c supervisord.conf restart damnit

Unlike DAMNIT, the HTTP control server listens on 127.0.0.1 only, and the configuration
(which holds its random username and password) is readable by its owner only.
"""
from __future__ import annotations

import configparser
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

CONFIG_NAME = "supervisord.conf"
PROGRAM = "damnit"
#: Where the backend's stdout and stderr go (the ``amore.log`` DAMNIT users know).
PROGRAM_LOG = "amore.log"
#: Seconds the program must live for Supervisor to count it as started; an earlier exit
#: is a failed start, which Supervisor retries whatever its exit status.
STARTSECS = 1

# `supervisorctl status` exit codes (LSB): 3 = stopped/exited/fatal, 4 = no answer
# (connection refused) *or* no such program.
_RC_NOT_RUNNING = 3
_RC_UNKNOWN = 4


class SupervisorError(RuntimeError):
    """Supervisor could not be started or did not do what was asked."""


def _bin(name: str) -> str:
    """The Supervisor executable installed next to this Python."""
    return str(Path(sys.executable).parent / name)


def config_path(damnit_dir) -> Path:
    """The ``supervisord.conf`` of a DAMNIT folder."""
    return Path(damnit_dir).absolute() / CONFIG_NAME


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _escape(value: str) -> str:
    """Protect ``%`` from Supervisor's own ``%(name)s`` expansion."""
    return value.replace("%", "%%")


def write_config(damnit_dir, command: list[str], *, env: dict[str, str] | None = None) -> Path:
    """Write ``supervisord.conf`` running ``command`` as program ``damnit``; mode 0600.

    A new free port on 127.0.0.1 and new random credentials are chosen on every call.
    """
    damnit_dir = Path(damnit_dir).absolute()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    username, password = secrets.token_hex(16), secrets.token_hex(32)

    config = configparser.ConfigParser(interpolation=None)
    config["supervisord"] = {
        "logfile": "%(here)s/supervisord.log",
        "pidfile": "%(here)s/supervisord.pid",
        "childlogdir": "%(here)s",
    }
    config["inet_http_server"] = {
        "port": f"127.0.0.1:{port}", "username": username, "password": password,
    }
    config["supervisorctl"] = {"serverurl": url, "username": username, "password": password}
    config["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface",
    }
    program = {
        "command": _escape(shlex.join(str(c) for c in command)),
        "directory": _escape(str(damnit_dir)),
        "autostart": "true",
        # A backend that cannot start exits with 78 (see backend.EXIT_CANNOT_START):
        # restarting would fail the same way. Any other exit is restarted.
        "autorestart": "unexpected",
        "exitcodes": "0,78",
        "startsecs": str(STARTSECS),
        "stopasgroup": "true",
        "killasgroup": "true",
        "stopwaitsecs": "20",
        "redirect_stderr": "true",
        "stdout_logfile": f"%(here)s/{PROGRAM_LOG}",
    }
    if env:
        program["environment"] = ",".join(
            f'{key}="{_escape(str(value))}"' for key, value in env.items()
        )
    config[f"program:{PROGRAM}"] = program

    path = config_path(damnit_dir)
    tmp = path.with_name(f".{CONFIG_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        config.write(f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def _ctl(damnit_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_bin("supervisorctl"), "-c", str(config_path(damnit_dir)), *args],
        capture_output=True, text=True, timeout=60,
    )


def _status(damnit_dir) -> tuple[int, str]:
    """``supervisorctl status damnit``: (return code, output), rc 4 only if unreachable."""
    if not config_path(damnit_dir).is_file():
        return _RC_UNKNOWN, ""
    proc = _ctl(damnit_dir, "status", PROGRAM)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode == _RC_UNKNOWN and "no such process" in out.lower():
        raise SupervisorError(
            f"the supervisord of {config_path(damnit_dir)} runs no program {PROGRAM!r}: "
            f"it was started from another configuration; stop it first"
        )
    if proc.returncode not in (0, _RC_NOT_RUNNING, _RC_UNKNOWN):
        raise SupervisorError(
            f"supervisorctl -c {config_path(damnit_dir)} status {PROGRAM} failed "
            f"(exit code {proc.returncode}): {out}"
        )
    return proc.returncode, out


def status(damnit_dir) -> str:
    """What ``supervisorctl status damnit`` prints, or why there is nothing to ask."""
    rc, out = _status(damnit_dir)
    if rc == _RC_UNKNOWN:
        if not config_path(damnit_dir).is_file():
            return f"not set up: no {config_path(damnit_dir)}"
        return f"supervisord is not running ({config_path(damnit_dir)})"
    return out


def program_state(damnit_dir) -> tuple[str | None, int | None]:
    """(state, pid) of program ``damnit``: (``"RUNNING"``, 1234), (``"EXITED"``, None), or
    (None, None) when supervisord does not answer."""
    rc, out = _status(damnit_dir)
    if rc == _RC_UNKNOWN:
        return None, None
    fields = out.split()
    pid = re.search(r"\bpid (\d+)", out)
    return (fields[1] if len(fields) > 1 else out), (int(pid[1]) if pid else None)


def _wait_running(damnit_dir, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state, _ = program_state(damnit_dir)
        if state == "RUNNING":
            return
        if state in ("FATAL", "EXITED", "STOPPED"):
            break
        time.sleep(0.2)
    log = Path(damnit_dir).absolute() / PROGRAM_LOG
    tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
    raise SupervisorError(
        f"program {PROGRAM!r} of {config_path(damnit_dir)} is {state or 'not reachable'}, "
        f"not RUNNING, after {timeout:g} s; end of {log}:\n{tail}"
    )


def _start_supervisord(damnit_dir) -> None:
    proc = subprocess.run(
        [_bin("supervisord"), "-c", str(config_path(damnit_dir))],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0:
        raise SupervisorError(
            f"supervisord -c {config_path(damnit_dir)} failed (exit code "
            f"{proc.returncode}): {(proc.stdout + proc.stderr).strip()}"
        )


def start(damnit_dir, command: list[str], *, env: dict[str, str] | None = None,
          timeout: float = 30) -> None:
    """Make sure the backend runs, like DAMNIT's ``start_listener``; wait until RUNNING.

    No answer from supervisord: write a new configuration and start supervisord. Program
    stopped: start it. Already running: nothing (``command`` is not compared).
    """
    rc, _ = _status(damnit_dir)
    if rc == _RC_UNKNOWN:
        for attempt in range(3):
            write_config(damnit_dir, command, env=env)
            try:
                _start_supervisord(damnit_dir)
                break
            except SupervisorError as e:
                # The free port we probed may have been taken meanwhile: try a new one.
                if "already listening" not in str(e) or attempt == 2:
                    raise
        # supervisord daemonises before its HTTP server is up: wait for an answer.
        deadline = time.monotonic() + timeout
        while _status(damnit_dir)[0] == _RC_UNKNOWN:
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"supervisord of {config_path(damnit_dir)} did not answer within "
                    f"{timeout:g} s; see {Path(damnit_dir).absolute() / 'supervisord.log'}"
                )
            time.sleep(0.2)
    elif rc == _RC_NOT_RUNNING:
        proc = _ctl(damnit_dir, "start", PROGRAM)
        if proc.returncode != 0:
            raise SupervisorError(
                f"supervisorctl -c {config_path(damnit_dir)} start {PROGRAM} failed: "
                f"{(proc.stdout + proc.stderr).strip()}"
            )
    _wait_running(damnit_dir, timeout)


def restart(damnit_dir, *, timeout: float = 30) -> str:
    """``supervisorctl restart damnit`` and wait until RUNNING; returns its output."""
    if _status(damnit_dir)[0] == _RC_UNKNOWN:
        raise SupervisorError(
            f"cannot restart: {status(damnit_dir)}; start the backend first"
        )
    proc = _ctl(damnit_dir, "restart", PROGRAM)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise SupervisorError(
            f"supervisorctl -c {config_path(damnit_dir)} restart {PROGRAM} failed: {out}"
        )
    _wait_running(damnit_dir, timeout)
    return out


def _supervisord_pid(damnit_dir) -> int | None:
    pidfile = Path(damnit_dir).absolute() / "supervisord.pid"
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return re.match(r"\d+ \(.*\) (\S)", stat, re.S).group(1) not in ("Z", "X")


def stop(damnit_dir, *, timeout: float = 60) -> None:
    """Shut supervisord down (stopping the backend's process group first); wait for it."""
    if _status(damnit_dir)[0] == _RC_UNKNOWN:
        return
    pid = _supervisord_pid(damnit_dir)
    proc = _ctl(damnit_dir, "shutdown")
    if proc.returncode != 0:
        raise SupervisorError(
            f"supervisorctl -c {config_path(damnit_dir)} shutdown failed: "
            f"{(proc.stdout + proc.stderr).strip()}"
        )
    deadline = time.monotonic() + timeout
    while pid is not None and _alive(pid):
        if time.monotonic() > deadline:
            raise SupervisorError(
                f"supervisord (pid {pid}) still runs {timeout:g} s after shutdown")
        time.sleep(0.1)
