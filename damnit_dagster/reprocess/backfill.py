"""Reprocessing runs as Dagster asset backfills of ranged runs, followed until done.

:func:`reprocess` is what ``damnit-dagster reprocess`` calls: it picks the variables
(DAMNIT's ``--var``/``--match``/trigger rules, dependencies added back), adds missing run
partitions, registers one asset backfill on the instance — the daemon turns it into
Dagster runs over contiguous ranges of runs, each of at most
:data:`~damnit_dagster.defs.partitions.VALUES_PER_DAGSTER_RUN` values, thanks to the
assets' ``BackfillPolicy.multi_run`` — and reports progress from the events of the
backfill's runs until every run is accounted for.
Runs without proc data fall back to their raw variables (the step's runner does that).
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable

import dagster as dg

from damnit_dagster.defs import tags
from damnit_dagster.defs.assets import variable_key
from damnit_dagster.defs.definitions import build_definitions
from damnit_dagster.defs.partitions import add_runs
from damnit_dagster.events.inbox import ring, wake_address
from damnit_dagster.plugins.dagster_private import (  # what the UI's backfill button makes
    BACKFILL_ID_TAG,
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionStatus,
    PartitionBackfill,
    make_new_backfill_id,
)
from damnit_dagster.plugins.home import inbox_path
from damnit_dagster.plugins.wakeup import BACKFILL_RING
from damnit_dagster.reprocess.results import Progress, ResultCollector, RunResult
from damnit_dagster.reprocess.selection import announce_queued, selection
from damnit_dagster.storage.layout import DamnitPaths

#: Seconds without a daemon heartbeat after which progress says the daemon seems down.
DAEMON_QUIET = 60


def _daemon_alive(instance: dg.DagsterInstance) -> bool:
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < DAEMON_QUIET


def reprocess(damnit_dir, runs, *, match=(), variables=(), data: str = "all",
              progress: Callable[[Progress], None] | None = None,
              instance: dg.DagsterInstance | None = None, poll: float = 0.5,
              timeout: float | None = None, executor: str = "local") -> dict[int, RunResult]:
    """Recompute ``variables``/``match`` (default: every variable of trigger ``data``) for
    ``runs`` (``"all"`` = every run in ``runs.sqlite``, or numbers/ranges, see
    :func:`parse_runs`) through a backfill of ranged runs executed by the Dagster daemon.

    Calls ``progress(Progress)`` whenever the count of finished runs changes, and
    returns the per-run results once every run is accounted for (or the backfill ends).
    Raises ``TimeoutError`` after ``timeout`` seconds. ``executor="slurm"`` evaluates
    the non-cluster variables in Slurm job arrays (see ``defs/slurm_step.py``).
    Interrupted (Ctrl-C), it cancels the backfill and waits until its runs have stopped.
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
            tags={tags.TRIGGER: "reprocess", tags.DATA: data,
                  tags.PRIORITY: tags.REPROCESS_PRIORITY, tags.EXECUTOR: executor,
                  tags.PROCESSING: f"reprocess-{backfill_id}"},
            dynamic_partitions_store=instance, all_partitions=False,
            title=f"Reprocess p{proposal}: {len(run_list)} runs, {len(names)} variables",
            description=f"runs {run_list[0]}..{run_list[-1]}; variables: {', '.join(names)}",
            run_config=None)
        instance.add_backfill(backfill)
        ring(wake_address(inbox_path()), BACKFILL_RING)   # the daemon starts it at once
        gui = announce_queued(paths, proposal, run_list, f"reprocess-{backfill_id}", data)
        interrupted = threading.Event()
        try:
            with _ctrl_c_sets(interrupted):
                results = _follow(instance, backfill_id, proposal, run_list, set(names),
                                  progress, poll, timeout, interrupted)
            if interrupted.is_set():
                cancel(instance, backfill_id)
                raise KeyboardInterrupt
            return results
        finally:
            gui.flush(timeout=2.0)
    finally:
        if own_instance:
            instance.dispose()


@contextlib.contextmanager
def _ctrl_c_sets(event: threading.Event):
    """While following, Ctrl-C (SIGINT) sets ``event`` instead of raising wherever the
    command happens to be (for example inside the event log's lock), so that the backfill
    is cancelled cleanly; only in the main thread, where Python handles signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _follow(instance, backfill_id, proposal, run_list, names, progress, poll, timeout,
            interrupted: threading.Event):
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
        if interrupted.wait(poll):
            return collector.results


def cancel(instance: dg.DagsterInstance, backfill_id: str, wait: float = 60.0) -> None:
    """Cancel a backfill as the UI's button does (the daemon terminates its runs, which
    cancel their Slurm jobs), and wait up to ``wait`` seconds for its runs to stop."""
    backfill = instance.get_backfill(backfill_id)
    if backfill.status not in BULK_ACTION_TERMINAL_STATUSES:
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
        if all(r.is_finished for r in runs):
            return
        time.sleep(0.5)
