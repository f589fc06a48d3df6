"""DAMNIT 0.4.0, the baseline: its reprocessing (``compare_damnit.py``) and its idle
listeners (``idle_backends.py``)."""
from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from _bench_util import (
    BIN,
    CONTEXT,
    PROPOSAL,
    check_stored,
    free_port,
    log,
    run,
    run_measured,
    tail,
)

DAMNIT_REQUIREMENTS = ["damnit[backend]==0.4.0", "euxfel-extra"]
#: DAMNIT 0.4.0, migration event -> raw variables in runs.sqlite, same context, measured
#: live with nafka + DAMNIT's listener + combiner (research xfel-data.md §4).
DAMNIT_LATENCY = (5.5, 6.7)

#: ``damnit listen DIR`` with DAMNIT's hard-coded brokers replaced by the loopback one.
DAMNIT_WRAPPER = '''\
"""damnit listen DIR (DAMNIT 0.4.0's CLI), its Kafka brokers pointed at $AMORE_BROKER."""
import os, sys
from damnit.backend import listener
for conf in listener.KAFKA_CONF.values():
    conf["brokers"] = [os.environ["AMORE_BROKER"]]
from damnit.cli import main
sys.exit(main(["listen", sys.argv[1]]))
'''

#: DAMNIT 0.4.0's damnit/backend/supervisord.conf as its write_supervisord_conf fills it,
#: except for the control server bound to 127.0.0.1 (DAMNIT uses the host name).
DAMNIT_SUPERVISORD_CONF = """\
[supervisord]
logfile = %(here)s/supervisord.log
pidfile = %(here)s/supervisord.pid

[inet_http_server]
port = 127.0.0.1:{port}
username = {user}
password = {password}

[program:damnit]
command = {command}
stopasgroup = true
directory = {directory}
stderr_logfile = NONE
stdout_logfile = NONE

[supervisorctl]
serverurl = http://127.0.0.1:{port}
username = {user}
password = {password}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
"""


# ---------------------------------------------------------------- reprocessing

def damnit_venv(workdir: Path) -> Path:
    """``<workdir>/damnit-venv`` with DAMNIT 0.4.0 from PyPI; returns its ``bin`` folder."""
    venv = workdir / "damnit-venv"
    ready = venv / ".bench-ready"
    if not ready.exists():
        log(f"creating {venv} with {' '.join(DAMNIT_REQUIREMENTS)}")
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        *DAMNIT_REQUIREMENTS], check=True)
        ready.write_text(" ".join(DAMNIT_REQUIREMENTS) + "\n")
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('damnit'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != "0.4.0":
        raise SystemExit(f"{venv} has damnit {version}, not 0.4.0: remove the folder")
    return venv / "bin"


def run_damnit(bin_dir: Path, work: Path, nruns: int, env: dict):
    """DAMNIT's reprocess --direct of runs 1..nruns and its combiner: Measured."""
    folder = work / "amore"
    env = {**env, "AMORE_BROKER": "none", "PATH": f"{bin_dir}:{env['PATH']}"}
    damnit = bin_dir / "damnit"
    logfile = work / "damnit.log"
    run_measured([[damnit, "init", folder, "--proposal", PROPOSAL, "--context", CONTEXT]],
                 cwd=work, env=env, log=logfile)
    run_measured([[damnit, "db-config", "context_python", bin_dir / "python"]],
                 cwd=folder, env=env, log=logfile)
    measured = run_measured(
        [[damnit, "reprocess", "--direct", *range(1, nruns + 1)],
         [damnit, "combiner", "now", "."]], cwd=folder, env=env, log=logfile)
    check_stored(folder, PROPOSAL, nruns, "DAMNIT")
    return measured


# ---------------------------------------------------------------- idle listeners

def setup_damnit(workdir: Path, proposals: list[int], env: dict, logfile: Path):
    """DAMNIT folders for ``proposals`` and a listener folder with them registered:
    (listener folder, DAMNIT folders, the ``damnit listen`` wrapper script)."""
    damnit = BIN / "damnit"
    folders = []
    for proposal in proposals:
        folder = workdir / "damnit" / f"p{proposal:06d}"
        run([damnit, "init", folder, "--proposal", proposal, "--context", CONTEXT],
            env=env, logfile=logfile)
        folders.append(folder)
    central = workdir / "damnit-listener"
    central.mkdir()
    for proposal, folder in zip(proposals, folders):
        run([damnit, "listener", "add", proposal, folder], env=env, cwd=central, logfile=logfile)
        # per folder (``listen --daemonize`` in the folder): its own listener.sqlite
        run([damnit, "listener", "add", proposal, folder], env=env, cwd=folder, logfile=logfile)
    for where in (central, *folders):
        run([damnit, "listener", "config", "allow_local_processing", "1", "--num"],
            env=env, cwd=where, logfile=logfile)
    wrapper = workdir / "damnit_listen_local.py"
    wrapper.write_text(DAMNIT_WRAPPER)
    return central, folders, wrapper


def start_damnit_central(started, central: Path, wrapper: Path, env: dict):
    """One listener for every proposal, as the facility runs it: its Popen."""
    out = open(central / "listener.stderr", "wb")
    return started.popen([sys.executable, wrapper, central], env=env, cwd=central,
                         stdout=out, stderr=subprocess.STDOUT)


def start_damnit_per_folder(started, folder: Path, wrapper: Path, env: dict) -> None:
    """What ``damnit listen --daemonize`` sets up: a supervisord running the listener."""
    conf = folder / "supervisord.conf"
    conf.write_text(DAMNIT_SUPERVISORD_CONF.format(
        port=free_port(), user=secrets.token_hex(16), password=secrets.token_hex(32),
        command=f"{sys.executable} {wrapper} .", directory=folder))
    started.conf(conf)
    run([BIN / "supervisord", "-c", conf], env=env, cwd=folder,
        logfile=folder / "bench-start.log")


def damnit_listener_ready(logfile: Path, proc: subprocess.Popen | None = None) -> bool:
    if proc is not None and proc.poll() is not None:
        raise RuntimeError(f"DAMNIT's listener exited ({proc.returncode}): {tail(logfile)}")
    return logfile.is_file() and "Started listener" in logfile.read_text(errors="replace")
