"""The files an evaluation writes in ``extracted_data/``, and removing those of dead ones.

A fragment is named after the process that creates it and stores it when the evaluation
is over: ``p{P}_r{R}.{pid}@{host}.{random}.fragment.h5``. While evaluating, the runner
writes ``.<fragment>.writing``, ``<fragment>.report.json.progress`` and at the end
``<fragment>.report.json`` (``.tmp`` until it is complete). A process killed meanwhile
leaves them behind; :func:`remove_stale` (called when the run is next stored, and for
every run when a backend starts) removes those whose owner is gone: on this host, no process
has that pid, or the one that has it started after the file was last changed (the pid was
reused). Files named after another host are left alone: their owner cannot be checked.
"""
from __future__ import annotations

import functools
import os
import re
import socket
import tempfile
from pathlib import Path

from damnit_dagster.storage.layout import DamnitPaths

#: Suffix of a run file being written (``p{P}_r{R}.h5.<random>.tmp``) by
#: :func:`damnit_dagster.storage.writer.write_run_file`.
TMP_SUFFIX = ".tmp"
#: A process that started this long after a file was last changed cannot have written
#: it (the kernel's boot time, from which start times are counted, is rounded).
_CLOCK_SLACK = 2.0


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("@", "_") or "localhost"


def new_fragment(paths: DamnitPaths, proposal: int, run: int) -> Path:
    """Create an empty fragment file of run ``run`` owned by this process."""
    fd, name = tempfile.mkstemp(dir=paths.extracted_dir,
                                prefix=f"p{int(proposal)}_r{int(run)}.{os.getpid()}@{_host()}.",
                                suffix=".fragment.h5")
    os.close(fd)
    return Path(name)


def remove_stale(paths: DamnitPaths, proposal: int, run: int | None = None, *,
                 writer_holds_lock: bool = False) -> list[Path]:
    """Remove the files of run ``run``'s evaluations (of every run when None) whose owner
    process is gone (see the module's text); return them. With ``writer_holds_lock`` (a
    writer of ``run`` holding its lock), also the temporary run files of writers killed
    while they held it (``p{P}_r{R}.h5.*.tmp``): all in one pass over the folder."""
    runs = r"\d+" if run is None else str(int(run))
    pattern = re.compile(rf"\.?p{int(proposal)}_r{runs}\.(\d+)@([^.]+)\..*\.fragment\.h5")
    temporaries = (f"{paths.run_file(proposal, run).name}."
                   if writer_holds_lock and run is not None else None)
    host = _host()
    removed = []
    try:
        entries = list(os.scandir(paths.extracted_dir))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if (temporaries is not None and entry.name.startswith(temporaries)
                and entry.name.endswith(TMP_SUFFIX)):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
            continue
        match = pattern.match(entry.name)
        if not match or match[2] != host:
            continue
        try:
            mtime = entry.stat().st_mtime
        except FileNotFoundError:
            continue
        if _alive_since(int(match[1]), mtime):
            continue
        Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


def _alive_since(pid: int, mtime: float) -> bool:
    """Whether process ``pid`` runs and started before ``mtime`` (so may own the file)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return False
    started = _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    return started <= mtime + _CLOCK_SLACK


@functools.cache
def _boot_time() -> float:
    with open("/proc/stat") as f:
        return float(next(line for line in f if line.startswith("btime")).split()[1])
