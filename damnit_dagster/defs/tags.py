"""The names DAMNIT things have in Dagster: the asset group and key prefix of a proposal,
and the tags on the Dagster runs that process its runs (the run queue's limits in
``dagster.yaml`` refer to ``damnit/run`` and ``damnit/placement`` too)."""
from __future__ import annotations

#: What started a Dagster run: ``migration``, ``calibration`` or ``reprocess``.
TRIGGER = "damnit/trigger"
#: The run number a live-processing Dagster run processes (one at a time per run number).
RUN = "damnit/run"
#: The inbox event a live-processing Dagster run answers (``12``; ``12-40`` for a run
#: gathering several events, the first and last ids).
EVENT_ID = "damnit/event_id"
#: ``cluster`` on the Dagster runs that follow Slurm jobs.
PLACEMENT = "damnit/placement"
#: Which variables a reprocess computes: ``raw``, ``proc`` or ``all``.
DATA = "damnit/data"
#: ``stored`` on Dagster runs whose steps read the saved inputs of the variables they
#: compute from the run's file instead of recomputing them (``reprocess --stale``).
INPUTS = "damnit/inputs"
#: Value of :data:`INPUTS` for reading stored inputs.
STORED = "stored"
#: :data:`TRIGGER` of the proc pass, which reads its raw inputs from storage too.
CALIBRATION = "calibration"
#: Dagster's tag of a sensor's run key (``event-{id}``, ``event-{id}-cluster``).
RUN_KEY = "dagster/run_key"
#: Dagster's run-queue priority (higher first): live runs go ahead of reprocessing.
PRIORITY = "dagster/priority"
LIVE_PRIORITY, REPROCESS_PRIORITY = "10", "-10"
#: A reprocess's key of its runs' processing ids (what DAMNIT's GUI was told is queued).
PROCESSING = "damnit/processing"
#: Where a reprocess evaluates the non-cluster variables: ``local`` or ``slurm`` (a job
#: array, see ``execution/slurm_array.py``).
EXECUTOR = "damnit/executor"
#: The Slurm job array(s) of a Dagster run evaluating on Slurm (ids, comma-separated).
SLURM_JOBS = "damnit/slurm_jobs"


def processing_id(run_key: str, run: int) -> str:
    """The ``processing_id`` DAMNIT's GUI knows the processing of ``run`` by, from
    the queued request (``PENDING``) to its end."""
    return f"{run_key}-r{int(run)}"


def group_name(proposal: int) -> str:
    """``p1234``: the asset group of a proposal, and the first part of its asset keys."""
    return f"p{int(proposal)}"
