"""``reprocess --stale``: per run, recompute only the variables whose stored value is stale.

A saved variable of a run is stale when its value's provenance record
(:mod:`damnit_dagster.storage.provenance`) says so against the served context file:

* *never computed*: no record (never evaluated, stored before records existed, or by
  DAMNIT); a proc variable of a run without proc data waits for it and is not stale;
* *code changed*: its code version differs (its source, its group's fields, its
  options; not its title, tags or description, nor comments);
* *input changed*: an input's stored data version differs from the one it was computed
  from;
* *depends on a stale variable*: it is recomputed after it.

Everything else keeps its value, timestamp and HDF5 data; inputs that are not recomputed
are read from the run's file (``context_loader.stored``). ``--var``/``--match`` narrow the
candidates (with their dependencies); a stale dependent outside them stays stale. Values
of variables no longer in the context file (renamed, deleted) are kept and reported. A
context file that does not load is refused: nothing changes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from context_loader.proposal_paths import proc_available
from damnit_dagster.defs.context_source import load_context
from damnit_dagster.defs.variables import lineage, saved_variables
from damnit_dagster.execution.describe import describe_file
from damnit_dagster.reprocess.direct import reprocess_direct
from damnit_dagster.reprocess.results import RunResult
from damnit_dagster.reprocess.selection import choose_variables, parse_runs
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.provenance import stored_records


class StaleRefused(ValueError):
    """``--stale`` does nothing: the context file does not load."""


@dataclass
class StaleRun:
    """What is stale in one run: name -> why, and stored names no longer in the file."""

    run: int
    stale: dict[str, str] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)


def stale_in_run(records: dict[str, dict], variables: list[dict], candidates,
                 proc_ready: bool) -> dict[str, str]:
    """The stale ``candidates`` (names) of a run with provenance ``records``, in
    evaluation order, each with the reason."""
    parents = lineage(variables)
    stale = {}
    for var in saved_variables(variables):
        name = var["name"]
        if name not in candidates:
            continue
        record = records.get(name)
        if record is None:
            if var["data"] != "proc" or proc_ready:
                stale[name] = "never computed"
            continue
        if record.get("code_version") != var["code_version"]:
            stale[name] = "code changed"
            continue
        for parent in parents[name]:
            if parent in stale:
                stale[name] = f"depends on {parent}"
                break
            stored = records.get(parent)
            if stored is not None and record.get("inputs", {}).get(parent) != \
                    stored.get("data_version"):
                stale[name] = f"input {parent} changed"
                break
    return stale


def find_stale(damnit_dir, runs, match=(), variables=(),
               describe=describe_file) -> tuple[int, list[StaleRun]]:
    """(proposal, what is stale in each of ``runs``), the context file described by
    ``describe`` if it was not before. Raises :class:`StaleRefused` when the context file
    does not load, ``ValueError`` for a bad selection."""
    paths = DamnitPaths(damnit_dir)
    snapshot = load_context(paths.root, describe=describe)
    if snapshot.error is not None:
        raise StaleRefused(f"{paths.context_file} does not load, so nothing can be called "
                           f"stale; nothing was changed:\n{snapshot.error}")
    with DamnitDB(paths.db_file) as db:
        proposal = db.proposal
        if parse_runs(runs) == "all":
            runs = db.runs(proposal)
    described = snapshot.variables
    candidates = set(choose_variables(described, "all", tuple(variables), tuple(match)))
    known = {v["name"] for v in described}
    found = []
    for run in parse_runs(runs):
        records = stored_records(paths.run_file(proposal, run))
        found.append(StaleRun(
            run, stale_in_run(records, described, candidates, proc_available(proposal, run)),
            sorted(set(records) - known)))
    return proposal, found


def describe_stale(found: list[StaleRun]) -> list[str]:
    """What ``--stale`` will do, one line per group of runs with the same stale set."""
    groups: dict[tuple, list[int]] = {}
    for item in found:
        groups.setdefault(tuple(item.stale.items()), []).append(item.run)
    lines = []
    for stale, runs in groups.items():
        if stale:
            lines.append(f"{_runs_text(runs)}: recomputing "
                         + ", ".join(f"{n} ({why})" for n, why in stale))
    gone = sorted({n for item in found for n in item.gone})
    if gone:
        lines.append("kept, no longer in the context file: " + ", ".join(gone))
    return lines


def _runs_text(runs: list[int]) -> str:
    return f"r{runs[0]}" if len(runs) == 1 else f"{len(runs)} runs (r{runs[0]}..r{runs[-1]})"


def reprocess_stale(damnit_dir, runs, *, match=(), variables=(), data: str = "all",
                    progress=None, instance=None, server=None,
                    say: Callable[[str], None] = print,
                    executor: str = "local") -> dict[int, RunResult]:
    """Recompute what is stale in ``runs`` in this process (``executor="slurm"``: in Slurm
    job arrays), telling ``say`` what and why first; returns the per-run results of the
    runs that had anything stale."""
    _, found = find_stale(damnit_dir, runs, match, variables,
                          describe=server.describe if server is not None else describe_file)
    for line in describe_stale(found):
        say(line)
    groups: dict[tuple[str, ...], list[int]] = {}
    for item in found:
        if item.stale:
            groups.setdefault(tuple(item.stale), []).append(item.run)
    if not groups:
        say("nothing is stale: nothing recomputed")
        return {}
    results = {}
    for names, group_runs in groups.items():
        results.update(reprocess_direct(damnit_dir, group_runs, data=data, progress=progress,
                                        instance=instance, server=server, only=list(names),
                                        executor=executor))
    return results
