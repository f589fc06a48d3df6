"""Our backend, as the benchmarks run it: ``reprocess`` with and without a running backend,
events through ``listen`` (``compare_damnit.py``), and ``serve`` of several folders at once
(``idle_backends.py``)."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from _bench_util import (
    BIN,
    CONTEXT,
    PROPOSAL,
    PeakTreeRSS,
    check_stored,
    folder_name,
    fresh,
    log,
    run_measured,
    tail,
    tree_sample,
)

if TYPE_CHECKING:
    from _idle_processes import Started


# ---------------------------------------------------------------- reprocessing

def run_ours(work: Path, nruns: int, env: dict, with_backend: bool = False):
    """``damnit-dagster reprocess 1-N`` in a fresh folder and Dagster home: Measured.

    Without a backend the command executes the Dagster runs itself (as DAMNIT's
    ``--direct`` does the work in the command). ``with_backend``: ``listen`` is started
    first (not timed) and the command hands a backfill to its daemon; the CPU of the
    backend's processes during the command and their memory are counted too."""
    folder, home = work / "amore", fresh(work / "dagster_home")
    env = {**env, "DAGSTER_HOME": str(home)}
    cli = BIN / "damnit-dagster"
    logfile = work / "ours.log"
    # Not timed, as DAMNIT's init: the folder, and the machine's Dagster instance, which
    # any earlier command has created where the backend is in use (creating its SQLite
    # storage is a one-time cost, not part of reprocessing).
    run_measured([[cli, "init", PROPOSAL, "--context", CONTEXT, "--path", folder],
                  [sys.executable, "-c",
                   "from damnit_dagster.plugins.home import prepare_instance; prepare_instance()"]],
                 cwd=work, env=env, log=logfile)
    command = [[cli, "--dir", folder, "reprocess", f"1-{nruns}"]]
    if not with_backend:
        measured = run_measured(command, cwd=folder, env=env, log=logfile)
    else:
        with listening(folder, home, env, logfile) as backend:
            _, _, before = tree_sample(backend.pid)
            with PeakTreeRSS(backend.pid) as peak:
                measured = run_measured(command, cwd=folder, env=env, log=logfile)
            measured.cpu += sum(cpu - before.get(p, 0.0) for p, cpu in peak.cpu_by_process.items())
            measured.peak_mib += peak.peak / 2**20
            measured.peak_pss_mib += peak.peak_pss / 2**20
    check_stored(folder, PROPOSAL, nruns, "ours")
    return measured


@contextlib.contextmanager
def listening(folder: Path, home: Path, env: dict, logfile: Path):
    """``damnit-dagster listen`` for ``folder``, running once its sensor has ticked."""
    import dagster as dg

    with open(logfile, "ab") as out:
        backend = subprocess.Popen([str(BIN / "damnit-dagster"), "--dir", str(folder), "listen"],
                                   cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            wait_for_sensor(instance, backend, logfile)
        yield backend
    finally:
        os.killpg(backend.pid, 15)
        try:
            backend.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(backend.pid, 9)
            backend.wait()


# ---------------------------------------------------------------- latency

def names_stored(db: Path, run: int) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return {n for (n,) in conn.execute(
            "SELECT name FROM run_variables WHERE proposal=? AND run=?", (PROPOSAL, run))}


def our_latency(work: Path, runs: list[int], expected: dict[int, set[str]], env: dict):
    """Events through ``damnit-dagster listen``: (latencies in s, peak MiB of the backend)."""
    import dagster as dg

    from damnit_dagster.events.inbox import EventInbox

    folder, home = work / "amore", fresh(work / "dagster_home")
    env = {**env, "DAGSTER_HOME": str(home)}
    logfile = work / "listen.log"
    run_measured([[BIN / "damnit-dagster", "init", PROPOSAL, "--context", CONTEXT,
                   "--path", folder]], cwd=work, env=env, log=logfile)
    db = folder / "runs.sqlite"
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    latencies = []
    try:
        with listening(folder, home, env, logfile) as backend, \
                PeakTreeRSS(backend.pid, interval=0.2) as peak, \
                dg.DagsterInstance.from_config(str(home)) as instance:
            inbox = EventInbox(home / "damnit_events.sqlite")
            for i, run in enumerate(runs):
                t0 = time.time()
                inbox.add("migration", PROPOSAL, run, source="benchmark")
                deadline = time.monotonic() + 180
                while not expected[run] <= names_stored(db, run):
                    if backend.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"r{run}: no results (backend {backend.poll()}); "
                                           f"see {logfile} and {home}")
                    time.sleep(0.02)
                seen = time.time() - t0
                wait_finished(instance, run)
                if i:                        # the first event is the warm-up
                    latencies.append(seen)
                log(f"  event r{run}: {seen:.2f} s{' (warm-up)' if not i else ''}")
                time.sleep(0.5)
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved
    return latencies, peak.peak / 2**20


def wait_for_sensor(instance, backend, logfile: Path, timeout: float = 180) -> None:
    """Until the daemon has ticked a sensor of the location once (the backend is up)."""
    from damnit_dagster.plugins.dagster_private import InstigatorType

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backend.poll() is not None:
            raise RuntimeError(f"damnit-dagster listen exited; see {logfile}")
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1):
                return
        time.sleep(0.3)
    raise TimeoutError(f"no sensor tick within {timeout} s; see {logfile}")


def wait_finished(instance, run: int, timeout: float = 120) -> None:
    """Until the Dagster runs of ``run`` are finished, so the next event starts from idle."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = instance.get_run_records(dg.RunsFilter(tags={"damnit/run": str(run)}))
        if records and all(r.dagster_run.is_finished for r in records):
            return
        time.sleep(0.05)


# ---------------------------------------------------------------- serving (idle backends)

def serve_ours(started: Started, folders: list[Path], env: dict, logdir: Path) -> dict:
    """``damnit-dagster --dir F serve`` for all folders at once: {folder: seconds to ready}."""
    def one(folder: Path) -> float:
        started.conf(folder / "supervisord.conf")
        t0 = time.monotonic()
        with open(logdir / f"serve-{folder_name(folder)}.log", "wb") as out:
            proc = started.popen([BIN / "damnit-dagster", "--dir", folder, "serve"],
                                 env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(240)
            except subprocess.TimeoutExpired:
                rc = "timeout (240 s)"
        if rc != 0:
            text = (logdir / f"serve-{folder_name(folder)}.log").read_text(errors="replace")
            raise RuntimeError(f"serve of {folder} failed ({rc}):\n{text[-2000:]}\n"
                               f"end of amore.log:\n{tail(folder / 'amore.log')}")
        return time.monotonic() - t0

    with ThreadPoolExecutor(len(folders)) as pool:
        return dict(zip(folders, pool.map(one, folders)))

