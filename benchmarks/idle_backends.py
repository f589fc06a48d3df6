"""Idle memory of N DAMNIT folders' backends served at once on one host, next to DAMNIT 0.4.0.

What runs, all on 127.0.0.1, with a temporary ``HOME`` and no ``DAGSTER_HOME`` (so each
folder gets its default instance under ``~/.local/state/damnit-dagster/<db_id>``):

* a Kafka broker: nafka (``tests/support/nafka_server.py``), the topics ``test.r2d2`` and
  ``cal.offline-corrections`` created first, as the facility's exist;
* **ours**: N mock proposals (2 runs each), ``damnit-dagster init P --context
  templates/context_25vars.py``, ``db-config kafka_brokers <nafka>`` (so each backend
  consumes Kafka, as DAMNIT's listener does), then ``damnit-dagster --dir F serve`` for all
  N at once: per folder a supervisord running ``listen``, which runs a code server (and its
  gRPC process), the webserver, the daemon and the daemon's warm run worker;
* **DAMNIT 0.4.0** (the ``damnit`` package of this venv), two ways, on its own folders
  (``damnit init DIR --proposal P``) for the same N proposals:

  - *central*: one listener for all N proposals, as the facility runs it
    (``damnit listener add P DIR`` in a listener folder, ``allow_local_processing 1``, then
    ``damnit listen DIR``);
  - *per folder*: what ``damnit listen --daemonize`` sets up in each folder, a supervisord
    running ``damnit listen .`` (its own ``supervisord.conf`` template, but with the
    control server on 127.0.0.1 instead of the host name).

  DAMNIT's brokers are hard-coded (``listener.KAFKA_CONF``): a small wrapper points them at
  the loopback broker, then calls ``damnit.cli.main(["listen", DIR])``.

Once every backend is ready, everything idles for ``--idle`` seconds; then the process trees
(ours: each folder's supervisord and its descendants; DAMNIT: the listener, or each
folder's supervisord) are sampled ``--samples`` times, a second apart, and the median is
shown: the sum of RSS (a page shared by forked processes counts once per process) and the
sum of PSS (counts it once in all: the right total for several backends; a page shared
with another tree, e.g. of libpython, is split between them, so each tree counts a little
less than it would alone). Also, over the idle time after its first third (at most 10 s,
left out as Kafka consumer groups settle then) plus the sampling: the CPU used, the bytes
written to storage (``write_bytes`` less ``cancelled_write_bytes``) and the growth of
``amore.log`` (DAMNIT: ``damnit.log``); the lines written to those logs after every
backend was ready; every process of one of our backends; a check that no process of any
tree has a connection to an address other than 127.0.0.1.

Everything started is stopped at the end, also on failure or SIGTERM (supervisorctl
shutdown, then any process left of the trees, the listener and nafka are killed by pid).

Usage: ``.venv/bin/python benchmarks/idle_backends.py [-n 2] [--idle 30] [--samples 5]
[--workdir DIR] [--keep]``: the markdown table goes to stdout, progress to stderr. The
work folder is a new temporary one (removed at the end unless ``--keep``); ``--workdir``
must not exist or be empty.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _bench_util import BIN, CONTEXT, folder_name, load_note, log, run, wait_for
from _damnit_baseline import (
    damnit_listener_ready,
    setup_damnit,
    start_damnit_central,
    start_damnit_per_folder,
)
from _idle_measure import Entity, foreign_connections, per_process, supervisord_pid
from _idle_processes import Started, start_nafka
from _our_backend import serve_ours
from _tables import report

FIRST_PROPOSAL = 2001


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--backends", type=int, default=2,
                        help="number of DAMNIT folders (default 2)")
    parser.add_argument("--idle", type=float, default=30,
                        help="seconds of idling before sampling (default 30)")
    parser.add_argument("--samples", type=int, default=5, help="samples, 1 s apart (default 5)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    if args.workdir:
        if args.workdir.exists() and any(args.workdir.iterdir()):
            parser.error(f"{args.workdir} is not empty")
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = args.workdir.absolute()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="idle-backends-"))
    started = Started(workdir)

    def on_signal(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    notes: list[str] = []
    try:
        table = bench(args, workdir, started, notes)
    finally:
        log("stopping everything")
        stop_notes = started.stop_all()
        for note in stop_notes:
            log(note)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    if stop_notes:
        table += "\n" + "\n".join(f"* clean-up: {n}" for n in stop_notes)
    print(table)
    return 0


def bench(args, workdir: Path, started: Started, notes: list[str]) -> str:
    from damnit_dagster.ops.mockdata import make_proposal

    n = args.backends
    data, home, logdir = workdir / "data", workdir / "home", workdir / "logs"
    for d in (home, logdir):
        d.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DAGSTER_", "XDG_", "DAMNIT_", "AMORE_"))
           and k not in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    env.update(HOME=str(home), EXTRA_DATA_DATA_ROOT=str(data), XFEL_DATA_ROOT=str(data),
               NO_PROXY="*", MPLBACKEND="Agg")
    proposals = list(range(FIRST_PROPOSAL, FIRST_PROPOSAL + n))

    log(f"work folder {workdir}; starting nafka")
    broker = start_nafka(started, workdir, env)
    env["AMORE_BROKER"] = broker
    broker_port = int(broker.rsplit(":", 1)[1])

    log(f"mock data and our {n} DAMNIT folders")
    folders = []
    for proposal in proposals:
        make_proposal(data, proposal, runs=range(1, 3))
        out = run([BIN / "damnit-dagster", "init", proposal, "--context", CONTEXT],
                  env=env, logfile=logdir / "setup.log")
        folder = Path(out.strip().splitlines()[-1])
        run([BIN / "damnit-dagster", "--dir", folder, "db-config", "kafka_brokers", broker],
            env=env, logfile=logdir / "setup.log")
        folders.append(folder)

    log(f"serving our {n} backends; meanwhile setting up DAMNIT 0.4.0")
    pool = ThreadPoolExecutor(1)
    try:
        serving = pool.submit(serve_ours, started, folders, env, logdir)
        central_dir, damnit_folders, wrapper = setup_damnit(workdir, proposals, env,
                                                             logdir / "damnit-setup.log")
        central_proc = start_damnit_central(started, central_dir, wrapper, env)
        for folder in damnit_folders:
            start_damnit_per_folder(started, folder, wrapper, env)
        wait_for(lambda: damnit_listener_ready(central_dir / "damnit.log", central_proc), 60,
                 "DAMNIT's central listener started")
        for folder in damnit_folders:
            wait_for(lambda folder=folder: damnit_listener_ready(folder / "damnit.log"), 60,
                     f"DAMNIT's listener of {folder}")
        serve_times = serving.result()
    except BaseException:
        started.end_commands("damnit-dagster")   # do not wait for `serve` to give up
        raise
    finally:
        pool.shutdown(wait=True)
    for folder, seconds in serve_times.items():
        log(f"ours: {folder_name(folder)} ready after {seconds:.1f} s")

    state_root = home / ".local" / "state" / "damnit-dagster"
    instances = {Path((d / "damnit_folder.txt").read_text().strip())
                 for d in state_root.iterdir() if (d / "damnit_folder.txt").is_file()}
    for folder in folders:
        if folder not in instances:
            notes.append(f"no Dagster instance of {folder} under {state_root}")

    ours = [Entity(f"p{p}", "ours", supervisord_pid(f), [f / "amore.log"])
            for p, f in zip(proposals, folders)]
    central = Entity(f"{n} proposals", "DAMNIT central", lambda: central_proc.pid,
                     [central_dir / "damnit.log"])
    per_folder = [Entity(f"p{p}", "DAMNIT per folder", supervisord_pid(f),
                         [f / "damnit.log", f / "supervisord.log"])
                  for p, f in zip(proposals, damnit_folders)]
    entities = [*ours, central, *per_folder]

    for e in entities:
        e.mark_ready()
    settle = min(10.0, args.idle / 3)
    log(f"all ready; idling {args.idle:g} s (rates over the last {args.idle - settle:g} s "
        f"and the sampling)")
    time.sleep(settle)
    for e in entities:
        e.begin_window()
    t0 = time.monotonic()
    time.sleep(args.idle - settle)
    load = load_note()
    breakdown = {"label": f"p{proposals[0]}", "procs": {}, "entity": ours[0]}
    for i in range(args.samples):
        if i:
            time.sleep(1)
        for e in entities:
            e.sample()
        for pid, sample in per_process(ours[0].pid).items():
            breakdown["procs"].setdefault(pid, []).append(sample)
    for e in entities:
        e.end_window()
    window_s = time.monotonic() - t0

    net = []
    for e in entities:
        foreign, to_broker = foreign_connections(e.pid, broker_port)
        net += [f"{e.kind} {e.label}: {x}" for x in foreign]
        if not to_broker:
            notes.append(f"{e.kind} {e.label}: no process of its tree is connected to the "
                         f"broker {broker}")
    for e in entities:
        if len(set(e.nprocs)) > 1:
            notes.append(f"{e.kind} {e.label}: the number of processes changed while "
                         f"sampling: {e.nprocs}")
    return report(args, ours, central, per_folder, breakdown, window_s, serve_times, notes,
                  net, load, settle)




if __name__ == "__main__":
    sys.exit(main())
