"""The processing log of a run: ``process_logs/r{R}-p{P}.out`` in the DAMNIT folder.

Every evaluation of a run appends to it (a header line as DAMNIT writes it, which
variables ran, their times, tracebacks and the user's prints); the GUI's "View processing
logs" shows it. The folder is ``0o777`` and the file ``0o666`` (shared by the team).
"""
from __future__ import annotations

import getpass
import socket
import sys
from pathlib import Path

from damnit_dagster.storage.layout import DamnitPaths, make_shared_dir, share


def log_path(damnit_dir, proposal: int, run: int) -> Path:
    """``<damnit_dir>/process_logs/r{run}-p{proposal}.out``."""
    return DamnitPaths(damnit_dir).log_file(proposal, run)


def ensure_log(damnit_dir, proposal: int, run: int) -> Path:
    """Create the log (and its folder) if missing, with the shared modes; return its path.

    A Slurm job appends to the file itself (``sbatch -o``), so it must exist with the
    right mode before the job starts.
    """
    path = log_path(damnit_dir, proposal, run)
    make_shared_dir(path.parent)
    path.touch()
    share(path)
    return path


def header(proposal: int, run: int, *, job_id=None, cluster=None, user=None,
           host=None) -> str:
    """DAMNIT's first line of an evaluation, e.g. ``----- Processing r5 (p1234) as alice
    on node1 (job id: 12, cluster: maxwell) -----`` (the job part only for Slurm jobs;
    user and host default to this process's)."""
    where = f" (job id: {job_id}, cluster: {cluster or 'default'})" if job_id else ""
    return (f"----- Processing r{run} (p{proposal}) as {user or getpass.getuser()} on "
            f"{host or socket.gethostname()}{where} -----")


def append(damnit_dir, proposal: int, run: int, text: str, *, echo=None) -> Path:
    """Append ``text`` (a newline is added if missing) to the run's log; also write it to
    ``echo`` (a text stream, e.g. ``sys.stderr`` for Dagster's compute logs) if given."""
    if not text.endswith("\n"):
        text += "\n"
    path = ensure_log(damnit_dir, proposal, run)
    with open(path, "a", encoding="utf-8", errors="replace") as f:
        f.write(text)
    if echo is not None:
        echo.write(text)
        echo.flush()
    return path


def resolve_echo(echo):
    """``echo`` as given; the default ``True`` means this process's ``sys.stderr``
    (which Dagster captures as the step's compute log), ``None``/``False`` no echo."""
    if echo is True:
        return sys.stderr
    return echo or None
