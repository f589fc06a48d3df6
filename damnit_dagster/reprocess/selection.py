"""What a reprocess request means: which runs (numbers, ranges, ``all``; only those whose
raw data is there) and which variables (DAMNIT's ``--var``/``--match``/trigger rules, with
the variables they depend on)."""
from __future__ import annotations

import re
from typing import NamedTuple

from damnit_dagster.defs.context_source import load_context
from damnit_dagster.defs.tags import processing_id
from damnit_dagster.defs.variables import saved_variables
from damnit_dagster.events.gui_updates import GuiUpdates
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths


def parse_runs(spec) -> list[int] | str:
    """``"all"``, or run numbers from ``"1-5,8 10"``, an int, or an iterable of those."""
    if isinstance(spec, str) and spec.strip().lower() == "all":
        return "all"
    items = [spec] if isinstance(spec, (int, str)) else list(spec)
    runs = set()
    for item in items:
        for part in re.split(r"[,\s]+", str(item).strip()):
            if not part:
                continue
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise ValueError(f"{part!r} is not a run number or range (examples: 7, 1-5)")
            lo, hi = int(m[1]), int(m[2] or m[1])
            if hi < lo:
                raise ValueError(f"{part!r}: the range goes backwards")
            runs.update(range(lo, hi + 1))
    return sorted(runs)


def choose_variables(variables: list[dict], data: str = "all", names=(), match=()) -> list[str]:
    """Saved variables to recompute, in evaluation order: DAMNIT's selection (``names`` are
    exact and win over ``match``, case-insensitive title substrings; ``data`` raw/proc
    keeps that trigger's variables), plus every saved variable they depend on."""
    by_name = {v["name"]: v for v in variables}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown variable(s): {', '.join(unknown)}")
    matches = [m.lower() for m in match]
    chosen = set()
    for v in variables:
        if data != "all" and v["data"] != data:
            continue
        if names:
            if v["name"] not in names:
                continue
        elif matches and not any(m in (v.get("title") or v["name"]).lower() for m in matches):
            continue
        chosen.add(v["name"])
    wanted, pending = set(), list(chosen)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(by_name[name]["deps"])
    return [v["name"] for v in saved_variables(variables) if v["name"] in wanted]


def runs_with_data(spec, known: set[int], raw_runs: set[int]) -> tuple[list[int], list[int]]:
    """(runs to reprocess, runs skipped for lack of raw data) of a RUNS argument; ``all`` is
    every run we know of and every run whose raw data is there. Raises ``ValueError``."""
    run_list = parse_runs(spec)
    if run_list == "all":
        run_list = sorted(known | raw_runs)
    return [r for r in run_list if r in raw_runs], [r for r in run_list if r not in raw_runs]


class Selection(NamedTuple):
    """What a reprocess request means."""

    proposal: int
    runs: list[int]
    names: list[str]           # saved variables to compute, in evaluation order
    variables: list[dict]      # the served context file's described variables


def selection(paths: DamnitPaths, runs, match=(), variables=(), data: str = "all") -> Selection:
    """The runs and variables of a reprocess request; ``"all"`` runs are those in
    ``runs.sqlite``. Raises ``ValueError`` for an empty or bad selection."""
    with DamnitDB(paths.db_file) as db:
        proposal = db.proposal
        if parse_runs(runs) == "all":
            runs = db.runs(proposal)
    run_list = parse_runs(runs)
    if not run_list:
        raise ValueError("no runs to reprocess")
    snapshot = load_context(paths.root)
    names = choose_variables(snapshot.variables, data, tuple(variables), tuple(match))
    if not names:
        raise ValueError("no saved variable matches the selection")
    return Selection(proposal, run_list, names, snapshot.variables)


def announce_queued(paths: DamnitPaths, proposal: int, runs, key: str, data: str) -> GuiUpdates:
    """Tell DAMNIT's GUI that ``runs`` are queued for reprocessing (``key``: the
    :data:`~damnit_dagster.defs.tags.PROCESSING` tag of their Dagster runs)."""
    with DamnitDB(paths.db_file) as db:
        gui = GuiUpdates.for_folder(paths.root, db.metameta.to_dict())
    for run in runs:
        gui.processing_state(processing_id(key, run), proposal, run, data, "PENDING")
    return gui
