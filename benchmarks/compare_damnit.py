"""DAMNIT 0.4.0 side by side with our backend and the in-process floor, on the same mock
proposal and the same 25-variable context (``damnit_dagster/templates/context_25vars.py``, or
``$DAMNIT_BENCH_CONTEXT``: see ``cheap_context.py``).

* **DAMNIT 0.4.0**, installed from PyPI into its own venv (``<workdir>/damnit-venv``,
  created once and reused): ``damnit init``, ``db-config context_python <that venv's
  python>``, then ``AMORE_BROKER=none damnit reprocess --direct 1 .. N`` and
  ``damnit combiner now .`` (research xfel-data.md §3.1), timed together.
* **ours**, two ways, each with a fresh DAMNIT folder and a fresh ``DAGSTER_HOME`` whose
  storage is created before (not timed, as ``init``: where the backend is used, the
  instance exists), timed end to end: ``damnit-dagster reprocess 1-N`` with no backend
  running (the command executes the Dagster runs itself, as DAMNIT's ``--direct`` does the
  work in the command), and the same command while ``damnit-dagster listen`` runs (started
  first, not timed; the command hands a single-run backfill to the backend's daemon; the CPU and
  memory of the backend's processes during the command are counted).
* **floor**: one warm Python process (after one warm-up run) loading the context once and
  calling ``context_loader.runner.execute`` + ``store_fragment`` per run
  (``reprocess_floor.floor``; ``_floor.py``).

Peak memory is the largest sum of RSS over the whole process tree (sampled every 0.1 s),
and the largest sum of PSS (every 1 s), which counts a page shared by forked processes
once in all instead of once per process.

Latency (event -> results in ``runs.sqlite``): ours is measured live through what a
beamline runs, ``damnit-dagster listen`` (code server, webserver, stock daemon) on a fresh
folder, one migration event at a time put in the event inbox, until every raw variable the
floor stores for that run is a row of ``run_variables``; the floor is the warm in-process
evaluation + store of the raw variables of a run. DAMNIT's is quoted, not re-measured
(``_damnit_baseline.DAMNIT_LATENCY``, from research xfel-data.md §4: nafka + DAMNIT's real
listener + local processing + combiner, the same context, on this machine).

Usage: ``python benchmarks/compare_damnit.py [--runs 20 [100]] [--events 20]
[--workdir /tmp/damnit-bench] [--reuse-damnit] [--repeat 3]``; ``--reuse-damnit`` takes
DAMNIT's numbers from an earlier pass in the same workdir (they do not depend on our
code); ``--repeat`` measures ours and the floor several times and shows the median pass.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from _bench_util import PROPOSAL, fresh, load_note, log
from _damnit_baseline import damnit_venv, run_damnit
from _floor import run_floor
from _our_backend import names_stored, our_latency, run_ours
from _tables import compare_report

os.environ.setdefault("MPLBACKEND", "Agg")

#: Who is measured, in this order: ``ours`` is ``reprocess`` with no backend running (the
#: command does the work, like DAMNIT's ``--direct``), ``ours-backfill`` ``reprocess``
#: while ``listen`` runs (a backfill run by the backend's daemon).
CONTENDERS = ("floor", "ours", "ours-backfill", "damnit")


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


def measure(who: str, work: Path, n: int, env: dict, bin_dir: Path) -> dict:
    """One pass of ``who`` reprocessing runs 1..n in ``work``: its results entry."""
    if who == "floor":
        info, measured, _ = run_floor(work, n, env)
        return {"wall": info["total"], "cpu": info["cpu"], "peak_mib": measured.peak_mib,
                "peak_pss_mib": measured.peak_pss_mib, "process_wall": measured.wall,
                "source": info["source"]}
    measured = (run_damnit(bin_dir, work, n, env) if who == "damnit"
                else run_ours(work, n, env, with_backend=who == "ours-backfill"))
    return {"wall": measured.wall, "cpu": measured.cpu, "peak_mib": measured.peak_mib,
            "peak_pss_mib": measured.peak_pss_mib}


def median_pass(passes: list[dict]) -> dict:
    """The pass with the median wall time (the lower one of an even count); the walls
    of all passes are kept in ``walls``."""
    chosen = sorted(passes, key=lambda p: p["wall"])[(len(passes) - 1) // 2]
    return {**chosen, "walls": [p["wall"] for p in passes]} if len(passes) > 1 else chosen


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
    print(compare_report(results, latency, args.repeat, loads))


if __name__ == "__main__":
    main()
