"""A step's runs evaluated in one Slurm job array (``reprocess --slurm``), stored here.

The Dagster run on the backend host stays in charge: it submits the array, tags itself
with the array's job id, stores each run's fragment as its task finishes and yields that
run's events then, so the UI's partitions and the CLI's progress move run by run. An
interrupted step (Ctrl-C, or the run terminated in the UI) cancels the array.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import dagster as dg

from damnit_dagster.defs.resources import DamnitFolder
from damnit_dagster.defs.tags import PROCESSING, RUN_KEY, SLURM_JOBS, processing_id
from damnit_dagster.execution.environment import ContextPythonError
from damnit_dagster.execution.process_run import RunOutcome, task_states
from damnit_dagster.execution.slurm import SlurmError
from damnit_dagster.execution.slurm_array import SlurmArray


def on_slurm(context: dg.AssetExecutionContext, damnit: DamnitFolder, proposal: int,
             runs: list[int], context_path, selected: list[str], data: str, settings: dict,
             evaluate_run: Callable[..., RunOutcome], stored_inputs: bool = False,
             submitted: SlurmArray | None = None) -> Iterator[tuple[int, RunOutcome]]:
    """Evaluate ``selected`` for ``runs`` in a job array (``stored_inputs``: reading the
    saved ones they depend on from each run's file); yield ``(run, outcome)`` as each
    run's task ends and its results are stored (by ``evaluate_run(run, evaluator)``).
    Raises ``dg.Failure`` with Slurm's message when the array is refused. ``submitted``:
    an array the command submitted before Dagster started (:mod:`.reprocess.ahead`);
    followed instead of a new one when it evaluates the same for these runs (its owner
    closes it; this step cancels it only when interrupted)."""
    run_key = context.run.tags.get(RUN_KEY) or context.run.tags.get(PROCESSING)
    on_state = (task_states(damnit.path, settings, proposal, data,
                            lambda run: processing_id(run_key, run)) if run_key else None)
    if submitted is not None and submitted.evaluates(runs, context_path, selected, data,
                                                     stored_inputs):
        submitted.on_state = on_state
        try:
            yield from _follow(context, submitted, runs, evaluate_run, "followed")
        except BaseException:
            submitted.cancel()
            raise
        return
    with SlurmArray(damnit.path, proposal, runs, context_path, data=data, variables=selected,
                    settings=settings, stored_inputs=stored_inputs,
                    on_state=on_state) as array:
        try:
            array.submit()
        except (SlurmError, ContextPythonError) as e:
            raise dg.Failure(description=f"No run was processed: {e}") from None
        yield from _follow(context, array, runs, evaluate_run, "submitted")


def _follow(context: dg.AssetExecutionContext, array: SlurmArray, runs: list[int],
            evaluate_run: Callable[..., RunOutcome], how: str
            ) -> Iterator[tuple[int, RunOutcome]]:
    """Tag the run with the array's job ids, then store each of ``runs`` as it ends."""
    jobs = array.jobs
    ids = ",".join(job.job_id for job in jobs)
    context.instance.add_run_tags(context.run_id, {SLURM_JOBS: ids})
    tasks = len(array.settings.chunks(array.runs))
    context.log.info(
        f"{how.capitalize()} Slurm job array {ids} ({jobs[0].name}) for {len(runs)} runs: "
        f"{tasks} tasks, at most {array.settings.slots} running at once (concurrent_jobs); "
        f"each run's log is process_logs/r<run>-p{array.proposal}.out")
    busy, stored = 0.0, 0
    for run in array.ended(runs):
        t0 = time.perf_counter()
        # the caller yields the run's events before it resumes this loop
        yield run, evaluate_run(run, array.task(run))
        busy += time.perf_counter() - t0
        stored += 1
    if stored:
        context.log.info(f"Stored {stored} runs from Slurm in {busy:.2f} s of this "
                         f"host's time ({stored / busy:.1f} runs/s)")
