"""The tables the benchmarks print: ``compare_damnit.py``'s (DAMNIT 0.4.0, ours and the
floor side by side, with the goals) and ``idle_backends.py``'s (idle backends)."""
from __future__ import annotations

import os
import statistics
from typing import TYPE_CHECKING

from _bench_util import CONTEXT, PROPOSAL, MiB, folder_name
from _damnit_baseline import DAMNIT_LATENCY

if TYPE_CHECKING:
    from _idle_measure import Entity

#: Goals of the comparison (GitHub issue, step 7).
GOAL_THROUGHPUT_VS_DAMNIT = 10.0
GOAL_LATENCY_VS_DAMNIT = 0.5
GOAL_TIME_VS_FLOOR = 1.5


# ---------------------------------------------------------------- compare_damnit.py

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

def compare_report(results: dict, latency: dict | None, repeat: int, loads: list[str]) -> str:
    """The table of :func:`table` with its heading and what its words mean."""
    sources = ", ".join(sorted({r["floor"]["source"] for r in results.values()}))
    lines = [
        f"\nDAMNIT 0.4.0 vs damnit-dagster vs the in-process floor: mock proposal "
        f"p{PROPOSAL}, context {CONTEXT.name}, {os.cpu_count()} cores\n",
        table(results, latency),
        "\nthroughput = runs / wall time: DAMNIT = reprocess --direct + combiner now; ours = "
        "damnit-dagster reprocess with no backend (the command does the work, as DAMNIT's "
        "--direct) or with the backend running (a backfill run by its daemon); floor = warm "
        f"in-process loop ({sources}).",
    ]
    if repeat > 1:
        lines.append(f"ours and floor: the pass with the median wall time of {repeat} "
                     "(DAMNIT: one pass).")
    lines += [
        "CPU time = user+sys of every process of the tree (sampled; floor: the loop only), "
        "steadier than wall time when other jobs load the machine.",
        "peak memory = largest sum of RSS over the process tree, sampled every 0.1 s "
        "(shared pages of forked workers counted in each); peak proportional memory = "
        "the same with PSS, where a page shared by N processes counts 1/N in each (what "
        "the tree really occupies).",
        "machine load during each part (other jobs share the cores):",
    ]
    lines += [f"  {line}" for line in loads]
    return "\n".join(lines)


# ---------------------------------------------------------------- idle_backends.py

def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "–"


def report(args, ours: list[Entity], central: Entity, per_folder: list[Entity],
           breakdown: dict, window_s: float, serve_times: dict, notes: list[str],
           net: list[str], load: str, settle: float) -> str:
    n = len(ours)
    med = lambda xs: statistics.median(xs) / MiB  # noqa: E731
    cpu = lambda e, pid=None: 100 * e.cpu_used(pid) / window_s  # noqa: E731
    disk = lambda e, pid=None: e.written(pid) * 60 / window_s / 1024  # noqa: E731

    def growth(e: Entity) -> float:
        return (e.log_end - e.log_start) * 60 / window_s

    c_rss, c_pss = med(central.rss), med(central.pss)

    def row(label, entities, log_name="", ratio=True, bold=False):
        rss = sum(med(e.rss) for e in entities)
        pss = sum(med(e.pss) for e in entities)
        ratios = [fmt_ratio(rss, c_rss), fmt_ratio(pss, c_pss)] if ratio else ["", ""]
        if bold:
            ratios = [f"**{r}**" for r in ratios]
        procs = sum(statistics.median(e.nprocs) for e in entities)
        return (f"| {label} | {procs:g} | {rss:.0f} | {pss:.0f} | {ratios[0]} | {ratios[1]} "
                f"| {sum(cpu(e) for e in entities):.1f} "
                f"| {sum(disk(e) for e in entities):.0f} "
                f"| {sum(growth(e) for e in entities):.0f}{log_name} |")

    lines = [
        f"N = {n} DAMNIT folders. Everything idled {args.idle:g} s after the last backend was "
        f"ready, then memory was sampled {args.samples} times 1 s apart (median shown); CPU, "
        f"disk writes and log growth are over {window_s:.0f} s: the idle time after its "
        f"first {settle:g} s, and the sampling. Machine: {load} at the start of sampling.",
        "",
        "| process tree | processes | RSS sum (MiB) | PSS sum (MiB) | RSS / DAMNIT central "
        "| PSS / DAMNIT central | CPU while idle (% of a core) | written to disk while idle "
        "(KiB/min) | log growth while idle (B/min) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [row(f"ours: backend of {e.label}", [e], " (amore.log)") for e in ours]
    lines.append(row(f"**ours: total, {n} backends**", ours, bold=True))
    lines.append(row(f"**DAMNIT 0.4.0 central: 1 listener for {n} proposals**", [central],
                     " (damnit.log)", ratio=False))
    lines += [row(f"DAMNIT 0.4.0 per folder ({e.label}): supervisord + `damnit listen .`", [e],
                  " (damnit.log + supervisord.log)") for e in per_folder]
    if per_folder:
        lines.append(row(f"DAMNIT 0.4.0 per folder: total, {n} supervisords", per_folder))
    t_pss = sum(med(e.pss) for e in ours)
    t_rss = sum(med(e.rss) for e in ours)
    lines += [""]
    if per_folder:
        p_rss, p_pss = (sum(med(e.rss) for e in per_folder),
                        sum(med(e.pss) for e in per_folder))
        lines.append(f"Ours against DAMNIT's per-folder set-up (`listen --daemonize` in each "
                     f"folder), totals: RSS {fmt_ratio(t_rss, p_rss)}, PSS "
                     f"{fmt_ratio(t_pss, p_pss)}.")
    lines += [
        f"Ours costs {t_pss / n:.0f} MiB PSS per backend; DAMNIT's central listener "
        f"{c_pss:.0f} MiB PSS for all {n} proposals.",
        "Time for `serve` to return (the backends started together): " + ", ".join(
            f"{folder_name(f)} {t:.1f} s" for f, t in serve_times.items()) + ".",
        "Connections to addresses other than 127.0.0.1: "
        + ("; ".join(net) if net else "none") + ".",
    ]

    label, procs = breakdown["label"], breakdown["procs"]
    e0 = breakdown["entity"]
    lines += ["", f"Where the memory of one backend goes ({label}, median of the samples):", "",
              "| process | RSS (MiB) | PSS (MiB) | CPU while idle (% of a core) "
              "| written to disk while idle (KiB/min) |",
              "| --- | --- | --- | --- | --- |"]
    order = sorted(procs, key=lambda pid: -statistics.median(s[2] for s in procs[pid]))
    for pid in order:
        samples = procs[pid]
        lines.append(f"| {samples[0][0]} | {med([s[1] for s in samples]):.0f} "
                     f"| {med([s[2] for s in samples]):.0f} | {cpu(e0, pid):.1f} "
                     f"| {disk(e0, pid):.0f} |")
    lines.append(f"| all | {sum(med([s[1] for s in v]) for v in procs.values()):.0f} "
                 f"| {sum(med([s[2] for s in v]) for v in procs.values()):.0f} "
                 f"| {cpu(e0):.1f} | {disk(e0):.0f} |")

    quoted = []
    for e in [*ours, central, *per_folder]:
        for path, new in e.new_lines().items():
            quoted.append(f"* {e.kind} {e.label}, {path.name} ({len(new)} lines):")
            quoted += [f"  `{line[:220]}`" for line in new[:8]]
            if len(new) > 8:
                quoted.append(f"  ... and {len(new) - 8} more")
    lines += ["", "Lines written to the logs after every backend was ready: "
              + ("none." if not quoted else "")]
    lines += quoted
    if notes:
        lines += ["", "Notes:"] + [f"* {note}" for note in notes]
    return "\n".join(lines)

