"""Reprocessing runs as Dagster single-run backfills, followed until done.

:func:`reprocess` is what ``damnit-dagster reprocess`` calls: it picks the variables
(DAMNIT's ``--var``/``--match``/trigger rules, dependencies added back), adds missing run
partitions, registers one asset backfill on the instance — the daemon turns it into one
Dagster run per contiguous range of runs, thanks to ``BackfillPolicy.single_run()`` — and
reports progress from the events of the backfill's runs until every run is accounted for.
Runs without proc data fall back to their raw variables (the step's runner does that).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import (  # the objects the UI's backfill button makes
    BULK_ACTION_TERMINAL_STATUSES,
    PartitionBackfill,
)
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.utils import make_new_backfill_id

from .assets import saved_variables, variable_key
from .context_source import load_context
from .definitions import build_definitions
from .outcomes import RUN_ERROR
from .partitions import add_runs
from .storage.database import DamnitDB
from .storage.layout import DamnitPaths

#: Seconds without a daemon heartbeat after which progress says the daemon seems down.
DAEMON_QUIET = 60


@dataclass
class RunResult:
    """What a reprocessed run ended with, per variable."""

    run: int
    ok: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    #: Why the run could not be processed at all (its data could not be opened, its
    #: results not stored...); then every variable is in ``failed`` with this reason.
    run_error: str | None = None

    def names(self) -> set[str]:
        return {*self.ok, *self.skipped, *self.failed}

    @property
    def processed(self) -> bool:
        """True when the run was evaluated and stored (even if some variables failed)."""
        return self.run_error is None and bool(self.names())


@dataclass
class Progress:
    """A progress report: ``done`` of ``total`` runs, and what is going on."""

    done: int
    total: int
    status: str
    backfill_id: str


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


def _daemon_alive(instance: dg.DagsterInstance) -> bool:
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < DAEMON_QUIET


class ResultCollector:
    """Per-run results, read from the materialization and check events of Dagster runs.

    :meth:`update` reads only the events written since its last call (a cursor per
    Dagster run), so following a long reprocess costs little.
    """

    _TYPES = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION}

    def __init__(self, proposal: int, runs: list[int]):
        self.prefix = f"p{int(proposal)}"
        self.results = {r: RunResult(r) for r in runs}
        self._cursors: dict[str, str | None] = {}

    def update(self, instance: dg.DagsterInstance, run_ids) -> dict[int, RunResult]:
        """Read the new events of ``run_ids``; returns the results so far."""
        for run_id in run_ids:
            while True:
                page = instance.get_records_for_run(run_id, cursor=self._cursors.get(run_id),
                                                    of_type=self._TYPES, limit=1000)
                for record in page.records:
                    self._add(record.event_log_entry.dagster_event)
                self._cursors[run_id] = page.cursor
                if not page.has_more:
                    break
        return self.results

    def done(self, names: set[str]) -> int:
        """How many runs have a result for each of ``names``."""
        return sum(1 for r in self.results.values() if r.names() >= names)

    def _add(self, event) -> None:
        if event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            key, partition = mat.asset_key, mat.partition
        else:
            evaluation = event.asset_check_evaluation_data
            key, partition = evaluation.asset_key, evaluation.partition
        if not key.path or key.path[0] != self.prefix or partition is None:
            return
        result = self.results.get(int(partition))
        if result is None:
            return
        name = ".".join(key.path[1:])
        if event.is_step_materialization:
            result.ok.append(name)
        elif evaluation.severity == dg.AssetCheckSeverity.ERROR:
            result.failed[name] = evaluation.description or ""
            error_cls = evaluation.metadata.get("error_cls")
            if error_cls is not None and error_cls.value == RUN_ERROR:
                result.run_error = evaluation.metadata["error"].value
        else:
            result.skipped[name] = evaluation.description or ""


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
            runs = [r["run"] for r in db.conn.execute(
                "SELECT DISTINCT run FROM run_info WHERE proposal = ? ORDER BY run",
                (proposal,))]
    run_list = parse_runs(runs)
    if not run_list:
        raise ValueError("no runs to reprocess")
    snapshot = load_context(paths.root)
    names = choose_variables(snapshot.variables, data, tuple(variables), tuple(match))
    if not names:
        raise ValueError("no saved variable matches the selection")
    return Selection(proposal, run_list, names, snapshot.variables)


def reprocess(damnit_dir, runs, *, match=(), variables=(), data: str = "all",
              progress: Callable[[Progress], None] | None = None,
              instance: dg.DagsterInstance | None = None, poll: float = 1.0,
              timeout: float | None = None) -> dict[int, RunResult]:
    """Recompute ``variables``/``match`` (default: every variable of trigger ``data``) for
    ``runs`` (``"all"`` = every run in ``runs.sqlite``, or numbers/ranges, see
    :func:`parse_runs`) through a single-run backfill executed by the Dagster daemon.

    Calls ``progress(Progress)`` whenever the count of finished runs changes, and
    returns the per-run results once every run is accounted for (or the backfill ends).
    Raises ``TimeoutError`` after ``timeout`` seconds.
    """
    paths = DamnitPaths(damnit_dir)
    proposal, run_list, names, _ = selection(paths, runs, match, variables, data)
    own_instance = instance is None
    instance = instance or dg.DagsterInstance.get()
    try:
        add_runs(instance, proposal, run_list)
        defs = build_definitions(paths.root, with_sensor=False)
        backfill_id = make_new_backfill_id()
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id, asset_graph=defs.resolve_asset_graph(),
            partition_names=[str(r) for r in run_list],
            asset_selection=[variable_key(proposal, n) for n in names],
            backfill_timestamp=time.time(),
            tags={"damnit/trigger": "reprocess", "damnit/data": data},
            dynamic_partitions_store=instance, all_partitions=False,
            title=f"Reprocess p{proposal}: {len(run_list)} runs, {len(names)} variables",
            description=f"runs {run_list[0]}..{run_list[-1]}; variables: {', '.join(names)}",
            run_config=None)
        instance.add_backfill(backfill)
        return _follow(instance, backfill_id, proposal, run_list, set(names), progress, poll,
                       timeout)
    finally:
        if own_instance:
            instance.dispose()


def _follow(instance, backfill_id, proposal, run_list, names, progress, poll, timeout):
    t0, last_done = time.time(), None
    collector = ResultCollector(proposal, run_list)
    while True:
        backfill = instance.get_backfill(backfill_id)
        dagster_runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
        collector.update(instance, [r.run_id for r in dagster_runs])
        done = collector.done(names)
        finished = bool(dagster_runs) and all(r.is_finished for r in dagster_runs)
        terminal = backfill.status in BULK_ACTION_TERMINAL_STATUSES
        if progress is not None and done != last_done:
            if not dagster_runs and not _daemon_alive(instance):
                status = "waiting for the Dagster daemon (is it running?)"
            else:
                status = backfill.status.value.lower()
            progress(Progress(done, len(run_list), status, backfill_id))
            last_done = done
        if terminal or (finished and done == len(run_list)):
            return collector.update(instance, [r.run_id for r in dagster_runs])
        if timeout is not None and time.time() - t0 > timeout:
            raise TimeoutError(f"backfill {backfill_id}: {done} of {len(run_list)} runs done "
                               f"after {timeout:.0f} s (status {backfill.status.value})")
        time.sleep(poll)
