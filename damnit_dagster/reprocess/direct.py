"""Reprocessing in this process, without a daemon: what ``damnit-dagster reprocess`` does
when no backend runs, or with ``--direct``.

Like DAMNIT's ``reprocess --direct``, the command itself does the work, so nothing has
to be started first. It executes the same jobs a backfill would launch, in this process,
against the instance: one Dagster run per contiguous range of run partitions of at most
:data:`~damnit_dagster.defs.partitions.VALUES_PER_DAGSTER_RUN` values (the local
variables; then the ``cluster=True`` ones, in Slurm as always), recorded like any other
run (tag ``damnit/trigger=reprocess-direct``), so the UI shows the materialisations and
the runs. Each run's user code still runs in its own forked child, one per core; the
command forks them from its evaluation server (:mod:`.execution.fork_server`), so this
process never executes the user's code.
"""
from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable

import dagster as dg

from damnit_dagster.defs import tags
from damnit_dagster.defs.assets import variable_key
from damnit_dagster.defs.context_source import load_context, variable_syncer
from damnit_dagster.defs.definitions import build_definitions
from damnit_dagster.defs.jobs import job_name
from damnit_dagster.defs.partitions import (
    add_runs,
    partition_ranges,
    partitions_name,
    runs_per_dagster_run,
)
from damnit_dagster.defs.variables import CLUSTER, bucket_of
from damnit_dagster.execution.fork_server import EvaluationServer
from damnit_dagster.execution.process_run import evaluate_and_store
from damnit_dagster.plugins.dagster_private import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    make_new_run_id,
)
from damnit_dagster.reprocess.results import (
    INTERRUPTED,
    Progress,
    ResultCollector,
    RunResult,
    was_interrupted,
)
from damnit_dagster.reprocess.selection import announce_queued, selection
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths

#: Tag value of ``damnit/trigger`` on the Dagster runs of a direct reprocess.
TRIGGER = "reprocess-direct"


def reprocess_direct(damnit_dir, runs, *, match=(), variables=(), data: str = "all",
                     progress: Callable[[Progress], None] | None = None,
                     instance: dg.DagsterInstance | None = None, poll: float = 0.5,
                     server: EvaluationServer | None = None,
                     only: list[str] | None = None,
                     executor: str = "local", slurm_array=None) -> dict[int, RunResult]:
    """Recompute the selected variables (as :func:`.backfill.reprocess`) of ``runs`` in
    this process; returns the per-run results. ``progress`` is called from a helper
    thread whenever the count of runs with stored results changes. With ``server``, the
    context file is described and evaluated there, never executed in this process.
    With ``only`` (saved variable names), exactly those are computed, the saved variables
    they depend on read from each run's file (``reprocess --stale``). With
    ``executor="slurm"``, the non-cluster variables are evaluated in a Slurm job array
    and stored here as each run's task ends; ``slurm_array``, one the command submitted
    already (:mod:`.ahead`), is followed instead."""
    paths = DamnitPaths(damnit_dir)
    if server is not None:  # the code location then finds the server's description
        load_context(paths.root, describe=server.describe,
                     on_new_version=variable_syncer(paths.root))
    proposal, run_list, names, described = selection(paths, runs, match, variables, data)
    extra_tags = {}
    if only is not None:
        names, extra_tags = [n for n in names if n in only], {tags.INPUTS: tags.STORED}
    placement = {v["name"]: bucket_of(v) for v in described}
    own_instance = instance is None
    instance = instance or dg.DagsterInstance.get()
    try:
        add_runs(instance, proposal, run_list)
        defs = build_definitions(paths.root, with_sensor=False, slurm_array=slurm_array,
                                 evaluate=functools.partial(evaluate_and_store, server=server))
        partition_keys = instance.get_dynamic_partitions(partitions_name(proposal))
        plan = []  # (job, asset keys, range, run id), local variables first
        for cluster in (False, True):
            keys = [variable_key(proposal, n) for n in names
                    if (placement[n] == CLUSTER) == cluster]
            if keys:
                job = defs.resolve_job_def(job_name("all", cluster))
                ranges = partition_ranges(partition_keys, run_list,
                                          max_runs=runs_per_dagster_run(len(keys)))
                plan.extend((job, keys, r, make_new_run_id()) for r in ranges)
        key = f"reprocess-{uuid.uuid4()}"
        gui = announce_queued(paths, proposal, run_list, key, data)
        collector = ResultCollector(proposal, run_list)
        unread, stopped = [], False   # Dagster runs whose events are still to be read
        with _Watcher(paths, proposal, run_list, progress, poll):
            try:
                for job, keys, (first, last), run_id in plan:
                    unread.append(run_id)
                    result = job.execute_in_process(
                        instance=instance, asset_selection=keys, run_id=run_id,
                        raise_on_error=False,
                        tags={ASSET_PARTITION_RANGE_START_TAG: first,
                              ASSET_PARTITION_RANGE_END_TAG: last, tags.TRIGGER: TRIGGER,
                              tags.DATA: data, tags.PROCESSING: key, tags.EXECUTOR: executor,
                              **extra_tags},
                        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
                    collector.add(result.all_events)   # not read back from the instance
                    unread.remove(run_id)
                    if was_interrupted(result):   # Ctrl-C: the next runs do not start
                        stopped = True
                        break
                    del result   # a Dagster run's events are kept only while it runs
            except KeyboardInterrupt:   # Ctrl-C between two Dagster runs
                stopped = True
        gui.flush(timeout=2.0)
        collector.update(instance, unread)
        if stopped:
            collector.not_processed(INTERRUPTED)
        return collector.results
    finally:
        if own_instance:
            instance.dispose()


class _Watcher:
    """Calls ``progress`` from a thread while the runs execute: a run counts as done once
    its results are in ``runs.sqlite`` (what the table shows), which costs one small query
    per poll instead of reading the Dagster events."""

    def __init__(self, paths: DamnitPaths, proposal, run_list, progress, poll):
        self.paths, self.proposal, self.progress, self.poll = paths, proposal, progress, poll
        self.runs = set(run_list)
        self.since = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="damnit-progress", daemon=True)

    def _done(self) -> int:
        with DamnitDB(self.paths.db_file) as db:
            stored = db.runs_stored_since(self.proposal, self.since)
        return len(stored & self.runs)

    def _watch(self):
        last = None
        while True:
            stopping = self._stop.wait(self.poll)
            done = self._done()
            if done != last:
                self.progress(Progress(done, len(self.runs), "running in this process", ""))
                last = done
            if stopping:
                return

    def __enter__(self):
        if self.progress is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
