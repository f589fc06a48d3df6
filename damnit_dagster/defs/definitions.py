"""The code location of one DAMNIT folder: assembles assets, jobs, sensor, the retention
schedule and resources.

The folder comes from ``$DAMNIT_DIR`` (set in ``workspace.yaml`` or by our ``serve``
command), the proposal from its ``runs.sqlite``. Nothing is read at import time: Dagster
calls :func:`defs` when it loads the location.
"""
from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from damnit_dagster.defs.assets import build_assets, head_starter
from damnit_dagster.defs.context_source import load_context, variable_syncer
from damnit_dagster.defs.io_manager import DamnitIOManager
from damnit_dagster.defs.jobs import build_jobs, job_name
from damnit_dagster.defs.partitions import runs_partitions
from damnit_dagster.defs.resources import DamnitFolder
from damnit_dagster.defs.retention import retention_schedule, trim_instance
from damnit_dagster.defs.sensors import build_event_sensor
from damnit_dagster.defs.variables import CLUSTER, bucket_of, saved_variables
from damnit_dagster.events.gui_updates import GuiUpdates
from damnit_dagster.execution.describe import describe_apart, describe_file
from damnit_dagster.execution.process_run import evaluate_and_store, same_interpreter
from damnit_dagster.plugins.home import inbox_path
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.proposal_data import ProposalNotFound, proposal_dir


def _proposal_dir(proposal: int) -> Path | None:
    """Where the run folders appear; None (no folder check) when the data root is unknown here."""
    try:
        return proposal_dir(proposal)
    except ProposalNotFound:
        return None


def build_definitions(damnit_dir, *, state_dir=None, evaluate=evaluate_and_store,
                      with_sensor: bool = True, slurm_array=None,
                      describe=describe_file) -> dg.Definitions:
    """The Definitions for ``damnit_dir``; a broken ``context.py`` serves the last good one.
    ``slurm_array``: a job array a ``reprocess --slurm`` command submitted already.
    ``describe`` describes a version of the context file not seen before (default: in
    this process)."""
    paths = DamnitPaths(damnit_dir)
    with DamnitDB(paths.db_file) as db:
        proposal = db.proposal
        python = db.setting("context_python")
    if proposal is None:
        raise RuntimeError(f"{paths.db_file} has no proposal number in its metameta table")

    snapshot = load_context(paths.root, state_dir=state_dir, describe=describe,
                            on_new_version=variable_syncer(paths.root),
                            context_python=None if same_interpreter(python) else python)
    has_cluster = any(bucket_of(v) == CLUSTER for v in saved_variables(snapshot.variables))
    jobs = build_jobs(proposal, has_cluster)
    sensors = []
    if with_sensor:
        sensors.append(build_event_sensor(
            proposal=proposal, inbox_path=inbox_path(), partitions_def=runs_partitions(proposal),
            jobs=[j for j in jobs if j.name in {job_name(t, c) for t in ("raw", "proc")
                                                for c in (False, True)}],
            proposal_dir=_proposal_dir(proposal), gui=lambda: gui_updates(paths),
            head_start=head_starter(snapshot, proposal, DamnitFolder(path=str(paths.root)))))
    return dg.Definitions(
        assets=build_assets(snapshot, proposal, evaluate, slurm_array), jobs=[*jobs, trim_instance],
        sensors=sensors, schedules=[retention_schedule],
        resources={"damnit": DamnitFolder(path=str(paths.root)),
                   "io_manager": DamnitIOManager(path=str(paths.root))},
        executor=dg.in_process_executor)


def gui_updates(paths: DamnitPaths) -> GuiUpdates:
    """The folder's DAMNIT GUI messages, with its current settings."""
    with DamnitDB(paths.db_file) as db:
        return GuiUpdates.for_folder(paths.root, db.metameta.to_dict())


@dg.definitions
def defs() -> dg.Definitions:
    """Entry point for ``dagster dev -w workspace.yaml`` and the daemon: the code server,
    which describes a new context file in a process of its own (and run workers)."""
    damnit_dir = os.environ.get("DAMNIT_DIR")
    if not damnit_dir:
        raise RuntimeError("Set DAMNIT_DIR to the DAMNIT folder to serve (the folder with "
                           "context.py and runs.sqlite)")
    return build_definitions(damnit_dir, describe=describe_apart)
