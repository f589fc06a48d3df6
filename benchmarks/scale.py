"""Bookkeeping at scale (issue 19): one proposal of N runs x 100 cheap variables.

For each N of ``--runs``, in a fresh DAMNIT folder and Dagster home (runs 2.. are hard
links of one mock run; the context is ``cheap_context.py``'s, or ``--context``):

* ``damnit-dagster reprocess 1-N`` with no backend running (the command executes the
  Dagster runs itself, as ``compare_damnit.py``'s "ours"): wall and CPU time of the
  process tree, time per run, peak PSS of the tree;
* the Dagster home's size on disk (every file under it), per stored value (a row of
  ``run_variables``), before and after retention: ``plugins.retention.trim`` with 0 days,
  so every finished Dagster run is old enough to be trimmed;
* what should not grow with N: ``damnit-dagster read-context``; one tick of the folder's
  event sensor (built by ``build_definitions``, called in-process on the instance as
  ``tests/defs/test_sensors.py`` does; the daemon's gRPC round trip not included),
  without and with a migration event of a new run; adding one run partition
  (``add_dynamic_partitions``); ``damnit-dagster reprocess N+1``, a new run processed;
* the Dagster UI (``dagster-webserver`` on ``workspace.yaml``, as
  ``tests/end_to_end/test_ui_browser.py``) in Chromium via Playwright, before and after
  retention: seconds from opening a page in a new tab until what it is for is drawn (the
  catalog: the first variable's row with its partition count; an asset's partitions: the
  materialised count; the group's lineage: the first variable's node coloured by its
  status; the reprocess's Dagster run: its first log rows, and its last log line when
  that line is unique in the run), capped at ``--cap``. A failed retention is shown as
  such.

Usage: ``python benchmarks/scale.py [--runs 100,1000,3000] [--vars 100]
[--workdir /tmp/damnit-bench-scale] [--cap 30] [--keep]``; ``--runs 50,200`` for a
quick try. Not run in CI. The markdown table goes to stdout, progress to stderr; each
N's folder is deleted once measured (unless ``--keep``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import (  # noqa: E402
    BIN,
    PROPOSAL,
    REPO,
    check_stored,
    fresh,
    load_note,
    log,
    run,
    run_measured,
)
from _ui_pages import PAGES, ui_pages  # noqa: E402
from cheap_context import cheap_context  # noqa: E402

#: Issue 19's goals.
GOAL_UI_S = 3.0
GOAL_BYTES_PER_VALUE = 2048
#: A metric is "flat" when its value at the largest N is at most this times the smallest N's.
FLAT = 1.5
#: Extra mock runs past the largest N: the new run of each N, and a spare.
SPARE_RUNS = 2
#: The free pages of the instance's SQLite files: space the files keep, reused by new rows.
FREE = "of all these: free pages in SQLite files"
WAL = "of all these: SQLite -wal files"


# ---------------------------------------------------------------- in a child process

def probe(folder: Path, new_run: int, repeat: int) -> dict:
    """Sensor ticks and partition additions on the instance of ``$DAGSTER_HOME``
    (ms, medians of ``repeat`` after a warm-up); the reprocess's Dagster run."""
    import dagster as dg

    from damnit_dagster.defs.context_source import state_dir_for
    from damnit_dagster.defs.definitions import build_definitions
    from damnit_dagster.defs.partitions import partitions_name
    from damnit_dagster.defs.sensors import SensorCursor
    from damnit_dagster.events.inbox import EventInbox
    from damnit_dagster.plugins.home import inbox_path

    defs = build_definitions(folder, state_dir=state_dir_for(folder))
    sensor = defs.resolve_sensor_def(f"p{PROPOSAL}_run_events")
    inbox = EventInbox(inbox_path())
    name = partitions_name(PROPOSAL)
    out = {}
    with dg.DagsterInstance.get() as instance:
        def tick(cursor: str):
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            t0 = time.perf_counter()
            result = sensor(ctx)
            return 1000 * (time.perf_counter() - t0), result

        def median_of(fn) -> float:
            fn()
            return statistics.median(fn() for _ in range(repeat))

        start = SensorCursor().dump()
        out["tick_idle_ms"] = median_of(lambda: tick(start)[0])
        inbox.add("migration", PROPOSAL, new_run, source="benchmark")
        ms, result = tick(start)
        if not isinstance(result, dg.SensorResult) or not result.run_requests:
            raise RuntimeError(f"the sensor did not request run {new_run}: {result}")
        out["tick_event_ms"] = median_of(lambda: tick(start)[0])

        def add() -> float:
            t0 = time.perf_counter()
            instance.add_dynamic_partitions(name, [str(new_run)])
            ms = 1000 * (time.perf_counter() - t0)
            instance.delete_dynamic_partition(name, str(new_run))
            return ms
        out["add_partition_ms"] = median_of(add)
        out["partitions"] = len(instance.get_dynamic_partitions(name))
    return out


def retention() -> dict:
    """``trim`` the instance of ``$DAGSTER_HOME`` with 0 days (s, what it removed)."""
    import dagster as dg

    from damnit_dagster.plugins.retention import trim

    with dg.DagsterInstance.get() as instance:
        t0 = time.perf_counter()
        done = trim(instance, 0)
        return {"trim_s": time.perf_counter() - t0, "trimmed": str(done)}


# ---------------------------------------------------------------- measuring one N

def mock_data(data: Path, nruns: int) -> None:
    """Runs 1..``nruns`` of the mock proposal (hard links of run 1), made once."""
    from event_latency import mock_runs

    marker = data / "runs.txt"
    if marker.exists() and int(marker.read_text()) >= nruns:
        return
    log(f"mock data: {nruns} runs (hard links of one) in {data}")
    shutil.rmtree(data, ignore_errors=True)
    mock_runs(data, nruns)
    marker.write_text(str(nruns))


def disk_usage(home: Path) -> dict[str, int]:
    """Bytes of the files under ``home``, in total and by where they are."""
    parts = {"total": 0, "event log (history/runs/)": 0, "runs.db": 0,
             "compute logs (storage/)": 0, "other": 0, FREE: 0, WAL: 0}
    for path in home.rglob("*"):
        if not path.is_file():
            continue
        size = path.stat().st_size
        parts["total"] += size
        rel = path.relative_to(home).parts
        key = ("event log (history/runs/)" if rel[:2] == ("history", "runs")
               else "runs.db" if rel == ("history", "runs.db")
               else "compute logs (storage/)" if rel[0] == "storage" else "other")
        parts[key] += size
        if path.name.endswith("-wal"):
            parts[WAL] += size
        if path.suffix == ".db":
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                free = conn.execute("PRAGMA freelist_count").fetchone()[0]
                parts[FREE] += free * conn.execute("PRAGMA page_size").fetchone()[0]
    return parts


def stored_values(folder: Path) -> int:
    with sqlite3.connect(folder / "runs.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) FROM run_variables WHERE proposal = ?",
                            (PROPOSAL,)).fetchone()[0]


def first_dagster_run(home: Path) -> str:
    """The run id of the first Dagster run of the instance (the reprocess of 1..N)."""
    with sqlite3.connect(home / "history" / "runs.db") as conn:
        return conn.execute("SELECT run_id FROM runs ORDER BY id LIMIT 1").fetchone()[0]


class Stored(threading.Thread):
    """Logs how many runs have results in ``runs.sqlite`` every ``every`` seconds;
    :attr:`all_at`: seconds until all had (checked every ``poll`` seconds)."""

    def __init__(self, folder: Path, nruns: int, every: float = 30, poll: float = 2):
        super().__init__(daemon=True)
        self.folder, self.nruns, self.every, self.poll = folder, nruns, every, poll
        self.stop = threading.Event()
        self.all_at: float | None = None

    def run(self):
        t0 = last = time.monotonic()
        while not self.stop.wait(self.poll):
            try:
                with sqlite3.connect(f"file:{self.folder / 'runs.sqlite'}?mode=ro",
                                     uri=True, timeout=5) as conn:
                    done = conn.execute("SELECT COUNT(DISTINCT run) FROM run_variables "
                                        "WHERE proposal = ?", (PROPOSAL,)).fetchone()[0]
            except sqlite3.Error:
                continue
            if done >= self.nruns and self.all_at is None:
                self.all_at = time.monotonic() - t0
            if time.monotonic() - last >= self.every:
                last = time.monotonic()
                log(f"  {done}/{self.nruns} runs stored after {last - t0:.0f} s")


def child(args: list, env: dict, logfile: Path) -> dict:
    """This script's ``--child`` mode in a new process: its JSON answer."""
    out = run([sys.executable, __file__, "--child", *args], env=env, logfile=logfile,
              timeout=3600)
    return json.loads(out.strip().splitlines()[-1])


def timed(cmd, env: dict, logfile: Path, cwd=None, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    run(cmd, env=env, cwd=cwd, logfile=logfile, timeout=timeout)
    return time.perf_counter() - t0


def measure(n: int, work: Path, context: Path, env: dict, cap: float) -> dict:
    """Everything of the module's list for a proposal of ``n`` runs."""
    folder, home = work / "amore", fresh(work / "dagster_home")
    env = {**env, "DAGSTER_HOME": str(home)}
    logfile = work / "commands.log"
    cli = BIN / "damnit-dagster"
    r = {"load": load_note()}
    run_measured([[cli, "init", PROPOSAL, "--context", context, "--path", folder],
                  [sys.executable, "-c", "from damnit_dagster.plugins.home import "
                   "prepare_instance; prepare_instance()"]], cwd=work, env=env, log=logfile)

    log(f"N={n}: reprocess 1-{n} ({r['load']})")
    watcher = Stored(folder, n)
    watcher.start()
    try:
        m = run_measured([[cli, "--dir", folder, "reprocess", f"1-{n}"]], cwd=folder,
                         env=env, log=logfile)
    finally:
        watcher.stop.set()
    check_stored(folder, PROPOSAL, n, f"reprocess of {n} runs")
    r.update(wall=m.wall, cpu=m.cpu, pss=m.peak_pss_mib, all_stored=watcher.all_at)
    log(f"  {m.wall:.1f} s ({1000 * m.wall / n:.0f} ms/run), CPU {m.cpu:.1f} s, "
        f"PSS {m.peak_pss_mib:.0f} MiB; home {disk_usage(home)['total'] / 1e6:.1f} MB")

    log(f"N={n}: read-context, sensor ticks, a partition, a new run")
    r["read_context"] = statistics.median(
        timed([cli, "--dir", folder, "read-context"], env, logfile, cwd=folder)
        for _ in range(3))
    r.update(child(["probe", folder, n + 1], env, logfile))
    r["new_run"] = timed([cli, "--dir", folder, "reprocess", n + 1], env, logfile, cwd=folder)
    check_stored(folder, PROPOSAL, n + 1, "reprocess of the new run")
    log(f"  read-context {r['read_context']:.2f} s, tick {r['tick_idle_ms']:.1f} / "
        f"{r['tick_event_ms']:.1f} ms, add partition {r['add_partition_ms']:.1f} ms, "
        f"new run {r['new_run']:.1f} s")

    run_id = first_dagster_run(home)
    log(f"N={n}: UI pages before retention")
    r["ui_before"] = ui_pages(folder, home, env, work, run_id, cap, f"n{n}-before")
    log(f"N={n}: retention")
    r["disk_before"], r["values_before"] = disk_usage(home), stored_values(folder)
    try:
        r.update(child(["retention"], env, logfile))
    except RuntimeError as e:   # shown in the table; the pages are measured again anyway
        r.update(trim_s=None, trimmed=f"FAILED: {str(e).strip().splitlines()[-1][:200]}")
    r["disk_after"], r["values_after"] = disk_usage(home), stored_values(folder)
    log(f"  trim {r['trim_s'] or 0:.1f} s: {r['trimmed']}; home "
        f"{r['disk_before']['total'] / 1e6:.1f} -> {r['disk_after']['total'] / 1e6:.1f} MB")
    log(f"N={n}: UI pages after retention")
    r["ui_after"] = ui_pages(folder, home, env, work, run_id, cap, f"n{n}-after")
    return r


# ---------------------------------------------------------------- the table

def table(results: dict[int, dict], nvars: int, cap: float) -> str:
    ns = list(results)
    rows = [f"| {nvars} cheap variables | " + " | ".join(f"N = {n:,}" for n in ns)
            + " | goal | met? |",
            "| --- |" + " --- |" * (len(ns) + 2)]

    def row(label, values, spec, goal="", met=""):
        cells = [format(v, spec) if isinstance(v, float | int)
                 else "failed" if v is None else str(v) for v in values]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {goal} | {met} |")

    def flat(values):
        growth = values[-1] / values[0] if values[0] else float("inf")
        return ("flat" if growth <= FLAT else "NO") + f": {growth:.2f}x for {ns[-1] / ns[0]:g}x N"

    get = lambda key: [results[n][key] for n in ns]  # noqa: E731
    row("reprocess 1-N, no backend: wall (s)", get("wall"), ".1f")
    row("  per run (ms)", [1000 * results[n]["wall"] / n for n in ns], ".0f", "flat",
        flat([results[n]["wall"] / n for n in ns]))
    row("  of which after the last run was stored (s)",
        [r["wall"] - r["all_stored"] if r.get("all_stored") is not None else "n/a"
         for r in results.values()], ".1f")
    row("  CPU of the process tree (s)", get("cpu"), ".1f")
    row("  peak PSS of the process tree (MiB)", get("pss"), ".0f")
    for when in ("before", "after"):
        per_value = [results[n][f"disk_{when}"]["total"] / results[n][f"values_{when}"]
                     for n in ns]
        row(f"Dagster home {when} retention (MB)",
            [results[n][f"disk_{when}"]["total"] / 1e6 for n in ns], ".1f")
        for part in results[ns[0]][f"disk_{when}"]:
            if part != "total":
                row(f"  {part} (MB)", [results[n][f"disk_{when}"][part] / 1e6 for n in ns],
                    ".1f")
        row(f"  bytes per stored value, {when} retention", per_value, ".0f",
            f"< {GOAL_BYTES_PER_VALUE}",
            "yes" if max(per_value) < GOAL_BYTES_PER_VALUE else "NO")
    row("stored values (rows of run_variables)", get("values_after"), ",")
    row("retention (trim, 0 days): time (s)", get("trim_s"), ".1f")
    for key, label, spec in (("read_context", "`read-context` (s)", ".2f"),
                             ("tick_idle_ms", "sensor tick, no event (ms)", ".1f"),
                             ("tick_event_ms", "sensor tick, one new run's event (ms)", ".1f"),
                             ("add_partition_ms", "add one run partition (ms)", ".1f"),
                             ("new_run", "`reprocess N+1`, one new run (s)", ".2f")):
        row(label, get(key), spec, "flat", flat(get(key)))
    for when in ("before", "after"):
        for name in PAGES:
            values = [results[n][f"ui_{when}"].get(name, "n/a") for n in ns]
            known = [v for v in values if v != "n/a"]
            ok = all(isinstance(v, float) and v < GOAL_UI_S for v in known)
            row(f"UI {when} retention: {name} (s)",
                [f"{v:.2f}" if isinstance(v, float) else f">{cap:g}" if v is None else v
                 for v in values], "", f"< {GOAL_UI_S:g}",
                "–" if not known else "yes" if ok else "NO")
    lines = ["\n".join(rows), "",
             "Trimmed: " + "; ".join(f"N = {n:,}: {results[n]['trimmed']}" for n in ns),
             "Load at the start of each N: " + "; ".join(f"N = {n:,}: {results[n]['load']}"
                                                         for n in ns)]
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        what = sys.argv[2]
        answer = (probe(Path(sys.argv[3]), int(sys.argv[4]), repeat=5) if what == "probe"
                  else retention())
        print(json.dumps(answer))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="100,1000,3000",
                        help="proposal sizes, comma-separated (default 100,1000,3000)")
    parser.add_argument("--vars", type=int, default=100,
                        help="cheap variables of the generated context (default 100)")
    parser.add_argument("--context", type=Path,
                        help="a context file instead of cheap_context.py's")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/damnit-bench-scale"))
    parser.add_argument("--cap", type=float, default=30, help="UI page time cap (s)")
    parser.add_argument("--keep", action="store_true", help="keep each N's folder")
    args = parser.parse_args()
    ns = [int(x) for x in args.runs.split(",")]
    workdir = args.workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    context = args.context.absolute() if args.context else workdir / f"cheap{args.vars}.py"
    if not args.context:
        context.write_text(cheap_context(args.vars))
    data = workdir / "data"
    mock_data(data, max(ns) + SPARE_RUNS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "DAMNIT_"))}
    env.update(EXTRA_DATA_DATA_ROOT=str(data), XFEL_DATA_ROOT=str(data), MPLBACKEND="Agg",
               AMORE_BROKER="none", PYTHONPATH=os.pathsep.join(
                   filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {}
    try:
        for n in ns:
            work = fresh(workdir / f"n{n}")
            t0 = time.monotonic()
            results[n] = measure(n, work, context, env, args.cap)
            log(f"N={n}: done in {time.monotonic() - t0:.0f} s")
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
        (workdir / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nScale: mock proposal p{PROPOSAL}, {context.name}, {os.cpu_count()} cores, "
          f"started {started}\n")
    print(table(results, args.vars, args.cap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
