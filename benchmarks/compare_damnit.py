"""DAMNIT 0.4.0 side by side with our backend and the in-process floor, on the same mock
proposal and the same 25-variable context (``damnit_dagster/templates/context_25vars.py``).

* **DAMNIT 0.4.0**, installed from PyPI into its own venv (``<workdir>/damnit-venv``,
  created once and reused): ``damnit init``, ``db-config context_python <that venv's
  python>``, then ``AMORE_BROKER=none damnit reprocess --direct 1 .. N`` and
  ``damnit combiner now .`` (research xfel-data.md §3.1), timed together.
* **ours**, two ways, each with a fresh DAMNIT folder and a fresh ``DAGSTER_HOME`` whose
  storage is created before (not timed, as ``init``: where the backend is used, the
  instance exists), timed end to end: ``damnit-dagster reprocess 1-N`` with no backend running (the command
  executes the Dagster runs itself, as DAMNIT's ``--direct`` does the work in the
  command), and the same command while ``damnit-dagster listen`` runs (started first, not
  timed; the command hands a single-run backfill to the backend's daemon; the CPU and
  memory of the backend's processes during the command are counted).
* **floor**: one warm Python process (after one warm-up run) loading the context once and
  calling ``context_loader.runner.execute`` + ``store_fragment`` per run
  (``reprocess_floor.floor`` when it is importable).

Peak memory is the largest sum of RSS over the whole process tree (sampled every 0.1 s),
and the largest sum of PSS (every 1 s), which counts a page shared by forked processes
once in all instead of once per process.

Latency (event -> results in ``runs.sqlite``): ours is measured live through what a
beamline runs, ``damnit-dagster listen`` (code server, webserver, stock daemon) on a fresh
folder, one migration event at a time put in the event inbox, until every raw variable the
floor stores for that run is a row of ``run_variables``; the floor is the warm in-process
evaluation + store of the raw variables of a run. DAMNIT's is the 5.5-6.7 s measured in
research xfel-data.md §4 (nafka + DAMNIT's real listener + local processing + combiner, the
same context, 4 events on this machine); it is quoted, not re-measured.

Usage: ``python benchmarks/compare_damnit.py [--runs 20 [100]] [--events 20]
[--workdir /tmp/damnit-bench] [--reuse-damnit] [--repeat 3]``; ``--reuse-damnit`` takes
DAMNIT's numbers from an earlier pass in the same workdir (they do not depend on our
code); ``--repeat`` measures ours and the floor several times and shows the median pass.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _bench_util import PeakTreeRSS, load_note, run_measured, tree_sample  # noqa: E402

CONTEXT = HERE.parent / "damnit_dagster" / "templates" / "context_25vars.py"
PROPOSAL = 1234
DAMNIT_REQUIREMENTS = ["damnit[backend]==0.4.0", "euxfel-extra"]
#: DAMNIT 0.4.0, migration event -> raw variables in runs.sqlite, same context, measured
#: live with nafka + DAMNIT's listener + combiner (research xfel-data.md §4).
DAMNIT_LATENCY = (5.5, 6.7)
#: Goals of the comparison (GitHub issue, step 7).
GOAL_THROUGHPUT_VS_DAMNIT = 10.0
GOAL_LATENCY_VS_DAMNIT = 0.5
GOAL_TIME_VS_FLOOR = 1.5
#: Who is measured, in this order: ``ours`` is ``reprocess`` with no backend running (the
#: command does the work, like DAMNIT's ``--direct``), ``ours-backfill`` ``reprocess``
#: while ``listen`` runs (a backfill run by the backend's daemon).
CONTENDERS = ("floor", "ours", "ours-backfill", "damnit")
BIN = Path(sys.executable).parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- set-up (cached)

def damnit_venv(workdir: Path) -> Path:
    """``<workdir>/damnit-venv`` with DAMNIT 0.4.0 from PyPI; returns its ``bin`` folder."""
    venv = workdir / "damnit-venv"
    ready = venv / ".bench-ready"
    if not ready.exists():
        log(f"creating {venv} with {' '.join(DAMNIT_REQUIREMENTS)} (about 1-2 min)")
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


def mock_data(workdir: Path, nruns: int) -> Path:
    """``<workdir>/data``: the mock proposal with runs 1..nruns (extended when needed)."""
    from damnit_dagster.ops.mockdata import make_proposal

    data = workdir / "data"
    marker = data / "runs.json"
    have = set(json.loads(marker.read_text())) if marker.exists() else set()
    missing = sorted(set(range(1, nruns + 1)) - have)
    if missing:
        log(f"writing {len(missing)} mock runs to {data}")
        make_proposal(data, PROPOSAL, missing)
        data.mkdir(exist_ok=True)
        marker.write_text(json.dumps(sorted(have | set(missing))))
    return data


def fresh(path: Path) -> Path:
    import shutil
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------- the three contenders

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
    check_stored(folder, nruns, "DAMNIT")
    return measured


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
                  [sys.executable, "-c", "from damnit_dagster.plugins.home import prepare_instance; "
                                         "prepare_instance()"]],
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
    check_stored(folder, nruns, "ours")
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


def run_floor(work: Path, nruns: int, env: dict, data: str = "all"):
    """The in-process floor in a child process: (loop time, Measured of the process)."""
    from damnit_dagster.storage.folder import init_damnit_dir

    folder = init_damnit_dir(work / "amore", PROPOSAL, context_source=CONTEXT).root
    out = work / f"floor-{data}.json"
    measured = run_measured([[sys.executable, __file__, "_floor", folder, nruns, data, out]],
                            cwd=work, env=env, log=work / "floor.log")
    return json.loads(out.read_text()), measured, folder


def floor_child(folder: str, nruns: str, data: str, out: str) -> None:
    """In the child: one warm-up run, then the timed loop; per-run times to ``out``."""
    import warnings
    warnings.filterwarnings("ignore")
    from context_loader import runner
    from context_loader.contextfile import ContextFile
    from damnit_dagster.storage.writer import store_fragment

    folder, runs = Path(folder), list(range(1, int(nruns) + 1))

    def one(ctx, run):
        fragment = folder / "extracted_data" / f"floor_r{run}.h5"
        t = time.perf_counter()
        runner.execute(ctx, PROPOSAL, run, data, fragment_path=str(fragment))
        store_fragment(folder, PROPOSAL, run, fragment)
        return time.perf_counter() - t

    warm = ContextFile.from_path(folder / "context.py")
    one(warm, runs[0])                      # imports, first figure
    result = {"source": "own loop"}
    cpu0 = time.process_time()
    if data == "all":
        try:
            from reprocess_floor import floor
            result = {"source": "reprocess_floor.floor", "total": floor(folder, runs)}
        except (ImportError, TypeError) as e:
            result["note"] = f"reprocess_floor.floor not usable: {e}"
    if "total" not in result:
        t0 = time.perf_counter()
        ctx = ContextFile.from_path(folder / "context.py")
        result["per_run"] = [one(ctx, run) for run in runs]
        result["total"] = time.perf_counter() - t0
    result["cpu"] = time.process_time() - cpu0
    Path(out).write_text(json.dumps(result))


def check_stored(folder: Path, nruns: int, who: str) -> None:
    """Every run has rows in ``run_variables`` (a benchmark of work not done is void)."""
    with sqlite3.connect(folder / "runs.sqlite") as conn:
        done = {r for (r,) in conn.execute(
            "SELECT DISTINCT run FROM run_variables WHERE proposal = ?", (PROPOSAL,))}
    missing = sorted(set(range(1, nruns + 1)) - done)
    if missing:
        raise RuntimeError(f"{who}: no results for runs {missing} in {folder}/runs.sqlite")


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


# ---------------------------------------------------------------- the table

def measure(who: str, work: Path, n: int, env: dict, bin_dir: Path) -> dict:
    """One pass of ``who`` reprocessing runs 1..n in ``work``: its results entry."""
    if who == "floor":
        info, measured, _ = run_floor(work, n, env)
        return {"wall": info["total"], "cpu": info["cpu"], "peak_mib": measured.peak_mib,
                "peak_pss_mib": measured.peak_pss_mib, "process_wall": measured.wall,
                "source": info["source"], "note": info.get("note")}
    measured = (run_damnit(bin_dir, work, n, env) if who == "damnit"
                else run_ours(work, n, env, with_backend=who == "ours-backfill"))
    return {"wall": measured.wall, "cpu": measured.cpu, "peak_mib": measured.peak_mib,
            "peak_pss_mib": measured.peak_pss_mib}


def median_pass(passes: list[dict]) -> dict:
    """The pass with the median wall time (the lower one of an even count); the walls
    of all passes are kept in ``walls``."""
    chosen = sorted(passes, key=lambda p: p["wall"])[(len(passes) - 1) // 2]
    return {**chosen, "walls": [p["wall"] for p in passes]} if len(passes) > 1 else chosen


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, spec=".2f"):
    if x is None:
        return "–"
    if isinstance(x, tuple):
        return f"{x[0]:{spec}}–{x[1]:{spec}}"
    return f"{x:{spec}}"


#: Row labels of our two ways of reprocessing.
MODES = {"ours": "reprocess, no backend", "ours-backfill": "reprocess, backend running"}


def table(results: dict, latency: dict | None) -> str:
    rows = ["| metric | DAMNIT 0.4.0 | ours | floor | ours/DAMNIT | ours/floor | goal met? |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for n, r in results.items():
        for who, mode in MODES.items():
            if who not in r:
                continue
            tp = {k: 60 * n / r[k]["wall"] for k in ("damnit", who, "floor")}
            vs_d, vs_f = ratio(tp[who], tp["damnit"]), ratio(tp[who], tp["floor"])
            goal = (f"≥{GOAL_THROUGHPUT_VS_DAMNIT:g}x DAMNIT: "
                    f"{'yes' if vs_d >= GOAL_THROUGHPUT_VS_DAMNIT else 'NO'}; "
                    f"≥1/{GOAL_TIME_VS_FLOOR:g} of floor: "
                    f"{'yes' if vs_f >= 1 / GOAL_TIME_VS_FLOOR else 'NO'}")
            rows.append(f"| {mode}: throughput, {n} runs (runs/min) | {fmt(tp['damnit'], '.1f')} "
                        f"| {fmt(tp[who], '.1f')} | {fmt(tp['floor'], '.1f')} | {fmt(vs_d)}x "
                        f"| {fmt(vs_f)}x | {goal} |")
            for metric, key, unit, spec in (("wall time", "wall", "s", ".1f"),
                                            ("CPU time of the process tree", "cpu", "s", ".1f"),
                                            ("peak memory of the process tree", "peak_mib",
                                             "MiB", ".0f"),
                                            ("peak proportional memory (PSS) of the tree",
                                             "peak_pss_mib", "MiB", ".0f")):
                if any(key not in r[k] for k in ("damnit", who, "floor")):
                    continue   # an earlier pass did not record it
                a, b, c = r["damnit"][key], r[who][key], r["floor"][key]
                rows.append(f"| {mode}: {metric}, {n} runs ({unit}) | {a:{spec}} | {b:{spec}} "
                            f"| {c:{spec}} | {fmt(ratio(b, a))}x | {fmt(ratio(b, c))}x | |")
    if latency:
        ours, floor = latency["ours_median"], latency["floor_median"]
        vs_d = (ours / DAMNIT_LATENCY[1], ours / DAMNIT_LATENCY[0])
        met = "yes" if vs_d[1] < GOAL_LATENCY_VS_DAMNIT else (
            "NO" if vs_d[0] >= GOAL_LATENCY_VS_DAMNIT else "partly")
        rows.append(f"| event → result latency, median of {latency['events']} (s) "
                    f"| {fmt(DAMNIT_LATENCY, '.1f')} (research §4) | {ours:.2f} "
                    f"(max {latency['ours_max']:.2f}) | {floor:.2f} | {fmt(vs_d)}x "
                    f"| {fmt(ratio(ours, floor))}x | <{GOAL_LATENCY_VS_DAMNIT:g}x DAMNIT: {met} |")
        rows.append(f"| peak memory, backend serving events (MiB) | – "
                    f"| {latency['ours_peak_mib']:.0f} | – | – | – | (no goal) |")
    return "\n".join(rows)


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[20],
                        help="run counts to reprocess (e.g. --runs 20 100)")
    parser.add_argument("--events", type=int, default=20,
                        help="events for our latency (0: skip the latency)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/damnit-bench"))
    parser.add_argument("--reuse-damnit", action="store_true",
                        help="take DAMNIT's numbers from an earlier pass in the same workdir "
                             "(<workdir>/damnit-results.json) when there are some")
    parser.add_argument("--repeat", type=int, default=1,
                        help="passes of ours and the floor per run count; the median pass "
                             "is shown (DAMNIT, at minutes per pass, is measured once)")
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS),
                        help="measure only these (a partial pass prints no table; with "
                             "'damnit' alone it records DAMNIT's numbers for --reuse-damnit)")
    args = parser.parse_args()
    workdir = args.workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = damnit_venv(workdir)
    data = mock_data(workdir, max(*args.runs, args.events + 1))
    env = {**os.environ, "EXTRA_DATA_DATA_ROOT": str(data), "XFEL_DATA_ROOT": str(data),
           "MPLBACKEND": "Agg"}
    env.pop("DAGSTER_HOME", None)
    loads, results = [], {}
    damnit_file = workdir / "damnit-results.json"
    damnit_known = json.loads(damnit_file.read_text()) if damnit_file.exists() else {}
    for n in args.runs:
        results[n] = {}
        for who in args.only:
            if who == "damnit" and args.reuse_damnit and str(n) in damnit_known:
                results[n][who] = damnit_known[str(n)]
                log(f"damnit, {n} runs: from {damnit_file} ({results[n][who]['when']})")
                continue
            before = load_note()
            passes = 1 if who == "damnit" else args.repeat
            log(f"{who}, {n} runs ... ({before}{f'; {passes} passes' if passes > 1 else ''})")
            results[n][who] = median_pass(
                [measure(who, fresh(workdir / f"{who}-{n}"), n, env, bin_dir)
                 for _ in range(passes)])
            if who == "damnit":
                results[n][who]["when"] = f"{time.strftime('%Y-%m-%d %H:%M')}, {before}"
                damnit_known[str(n)] = results[n][who]
                damnit_file.write_text(json.dumps(damnit_known, indent=1))
            entry = results[n][who]
            spread = (f" (median of {', '.join(f'{w:.1f}' for w in entry['walls'])})"
                      if "walls" in entry else "")
            log(f"  {who}: {entry['wall']:.1f} s{spread}, CPU {entry['cpu']:.1f} s, "
                f"peak {entry['peak_mib']:.0f} MiB, PSS {entry['peak_pss_mib']:.0f} MiB")
            loads.append(f"{who} {n} runs: before {before}; after {load_note()}")
    latency = None
    if args.events:
        runs = list(range(1, args.events + 2))
        work = fresh(workdir / "latency")
        log(f"latency floor, raw variables of {len(runs)} runs ... ({load_note()})")
        info, _, floor_folder = run_floor(fresh(work / "floor"), len(runs), env, data="raw")
        expected = {r: names_stored(floor_folder / "runs.sqlite", r) for r in runs}
        before = load_note()
        log(f"our latency, {len(runs)} events (first is warm-up) ... ({before})")
        ours, peak = our_latency(fresh(work / "ours"), runs, expected, env)
        loads.append(f"latency: before {before}; after {load_note()}")
        latency = {"events": len(ours), "ours_median": statistics.median(ours),
                   "ours_max": max(ours), "ours_peak_mib": peak,
                   "floor_median": statistics.median(info["per_run"][1:]), "ours": ours}
    (workdir / "results.json").write_text(json.dumps(
        {"runs": results, "latency": latency, "loads": loads}, indent=1))
    if not {"floor", "damnit"} <= set(args.only):
        log(f"partial pass ({', '.join(args.only)}): numbers in {workdir / 'results.json'}")
        return
    print(f"\nDAMNIT 0.4.0 vs damnit-dagster vs the in-process floor: mock proposal "
          f"p{PROPOSAL}, the 25-variable context, {os.cpu_count()} cores\n")
    print(table(results, latency))
    print("\nthroughput = runs / wall time: DAMNIT = reprocess --direct + combiner now; ours = "
          "damnit-dagster reprocess with no backend (the command does the work, as DAMNIT's "
          "--direct) or with the backend running (a backfill run by its daemon); floor = warm "
          "in-process loop "
          f"({', '.join(sorted({r['floor']['source'] for r in results.values()}))}).")
    if args.repeat > 1:
        print(f"ours and floor: the pass with the median wall time of {args.repeat} "
              "(DAMNIT: one pass).")
    print("CPU time = user+sys of every process of the tree (sampled; floor: the loop only), "
          "steadier than wall time when other jobs load the machine.")
    print("peak memory = largest sum of RSS over the process tree, sampled every 0.1 s "
          "(shared pages of forked workers counted in each); peak proportional memory = "
          "the same with PSS, where a page shared by N processes counts 1/N in each (what "
          "the tree really occupies).")
    print("machine load during each part (other jobs share the cores):")
    for line in loads:
        print(f"  {line}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_floor":
        floor_child(*sys.argv[2:])
    else:
        main()
