"""The backend under Supervisor: the commands of the spec's "Managing the backend" work.

A real supervisord runs a small stand-in backend that starts a child (as the real one starts
the Dagster webserver and daemon) and records both pids.
"""
import configparser
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from damnit_dagster.ops import supervisor

BACKEND = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open("pids.txt", "a") as f:
    f.write(f"{os.getpid()} {child.pid}\\n")
print("stand-in backend up", flush=True)
time.sleep(600)
"""

SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def ctl(folder, *args):
    """Run supervisorctl from the folder exactly as the spec shows."""
    return subprocess.run([SUPERVISORCTL, "-c", "supervisord.conf", *args],
                          cwd=folder, capture_output=True, text=True)


def pids(folder):
    """(backend pid, child pid) of every start so far, waiting for the latest to appear."""
    path = folder / "pids.txt"
    for _ in range(50):
        if path.is_file() and path.read_text().endswith("\n"):
            break
        time.sleep(0.1)
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


@pytest.fixture
def backend(tmp_path):
    """A DAMNIT folder whose stand-in backend runs under supervisord; stopped afterwards."""
    (tmp_path / "backend.py").write_text(BACKEND)
    command = [sys.executable, "-u", str(tmp_path / "backend.py")]
    supervisor.start(tmp_path, command, env={"DAMNIT_TEST": "50%"})
    yield tmp_path
    supervisor.stop(tmp_path)


def test_status_as_in_the_spec(backend):
    proc = ctl(backend, "status", "damnit")
    assert proc.returncode == 0
    m = re.fullmatch(r"damnit\s+RUNNING\s+pid (\d+), uptime 0:00:\d\d\n", proc.stdout)
    assert m, proc.stdout
    assert int(m.group(1)) == pids(backend)[-1][0]
    def without_uptime(text):  # the uptime may tick between the two calls
        return re.sub(r"uptime \S+", "", text.strip())
    assert without_uptime(supervisor.status(backend)) == without_uptime(proc.stdout)
    # The program's output goes to a log in the folder, supervisord's own to supervisord.log
    assert "stand-in backend up" in (backend / supervisor.PROGRAM_LOG).read_text()
    assert "success: damnit entered RUNNING state" in (backend / "supervisord.log").read_text()


def test_config_is_private_and_local(backend):
    conf = backend / "supervisord.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    config = configparser.ConfigParser(interpolation=None)
    config.read(conf)
    host, port = config["inet_http_server"]["port"].split(":")
    assert host == "127.0.0.1"
    assert config["supervisorctl"]["serverurl"] == f"http://127.0.0.1:{port}"
    assert len(config["inet_http_server"]["password"]) >= 32
    assert config["program:damnit"]["environment"] == 'DAMNIT_TEST="50%%"'
    # The kernel's table of listening TCP sockets: the port is bound to 127.0.0.1 only.
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _, state = line.split()[1:4]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == int(port):
                listening.append(addr)
    assert listening == ["0100007F"]


def test_restart_as_in_the_spec(backend):
    (first, first_child), = pids(backend)
    proc = ctl(backend, "restart", "damnit")
    assert proc.stdout == "damnit: stopped\ndamnit: started\n"
    (_, _), (second, second_child) = pids(backend)
    assert second != first
    assert not alive(first) and not alive(first_child)
    assert re.match(rf"damnit\s+RUNNING\s+pid {second},", ctl(backend, "status", "damnit").stdout)
    # The same through the Python API
    assert supervisor.restart(backend) == "damnit: stopped\ndamnit: started"
    assert pids(backend)[-1][0] not in (first, second)


def test_start_is_idempotent_and_restarts_a_stopped_backend(backend):
    command = [sys.executable, "-u", str(backend / "backend.py")]
    port = configparser.ConfigParser(interpolation=None)
    port.read(backend / "supervisord.conf")
    port = port["inet_http_server"]["port"]

    supervisor.start(backend, command)  # running: nothing happens
    assert len(pids(backend)) == 1

    assert ctl(backend, "stop", "damnit").stdout == "damnit: stopped\n"
    assert ctl(backend, "status", "damnit").returncode == 3
    assert re.match(r"damnit\s+STOPPED", supervisor.status(backend))
    supervisor.start(backend, command)  # stopped: started again by the same supervisord
    assert len(pids(backend)) == 2
    assert supervisor.status(backend).split()[1] == "RUNNING"
    again = configparser.ConfigParser(interpolation=None)
    again.read(backend / "supervisord.conf")
    assert again["inet_http_server"]["port"] == port


def test_stop_leaves_no_process_behind(tmp_path):
    (tmp_path / "backend.py").write_text(BACKEND)
    supervisor.start(tmp_path, [sys.executable, "-u", str(tmp_path / "backend.py")])
    daemon = int((tmp_path / "supervisord.pid").read_text())
    (backend, child), = pids(tmp_path)
    assert alive(daemon) and alive(backend) and alive(child)

    supervisor.stop(tmp_path)
    assert not alive(daemon) and not alive(backend) and not alive(child)
    assert ctl(tmp_path, "status", "damnit").returncode == 4
    assert supervisor.status(tmp_path) == (
        f"supervisord is not running ({tmp_path / 'supervisord.conf'})"
    )
    supervisor.stop(tmp_path)  # stopping again is harmless
    with pytest.raises(supervisor.SupervisorError, match="start the backend first"):
        supervisor.restart(tmp_path)


def test_a_backend_that_dies_is_reported(tmp_path):
    with pytest.raises(supervisor.SupervisorError) as info:
        supervisor.start(tmp_path, [sys.executable, "-c", "raise SystemExit('no Kafka')"],
                         timeout=20)
    try:
        assert "FATAL" in str(info.value) and "no Kafka" in str(info.value)
    finally:
        supervisor.stop(tmp_path)


def test_status_without_config(tmp_path):
    assert supervisor.status(tmp_path) == f"not set up: no {tmp_path / 'supervisord.conf'}"
