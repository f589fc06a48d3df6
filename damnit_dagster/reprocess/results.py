"""What a reprocess reports: each run's result per variable, read from the Dagster events
of its runs, progress while it goes, and the summary printed at the end."""
from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
from dagster import DagsterEventType

from damnit_dagster.defs.outcomes import RUN_ERROR
from damnit_dagster.defs.tags import group_name


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


#: Why a run was not processed when its Dagster run or step was interrupted.
INTERRUPTED = "interrupted (Ctrl-C, or its Dagster run was terminated)"


def interrupted(error) -> bool:
    """True when a Dagster event's error (or None) is an interrupt (SIGINT)."""
    return error is not None and error.cls_name in {"DagsterExecutionInterruptedError",
                                                    "KeyboardInterrupt"}


def was_interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """True when Ctrl-C stopped the Dagster run of ``result`` (Dagster absorbs the
    interrupt and records it as the run's failure)."""
    return any(interrupted(event.job_failure_data.error)
               for event in result.all_events if event.is_run_failure)


class ResultCollector:
    """Per-run results, read from the materialization and check events of Dagster runs.

    :meth:`add` takes events in hand; :meth:`update` reads only the events written
    since its last call (a cursor per Dagster run), so following a long reprocess
    costs little.
    """

    _TYPES = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION,
              DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}

    def __init__(self, proposal: int, runs: list[int]):
        self.prefix = group_name(proposal)
        self.results = {r: RunResult(r) for r in runs}
        self._cursors: dict[str, str | None] = {}

    def add(self, events) -> dict[int, RunResult]:
        """Take the results from Dagster events already in hand (the events of a run
        executed in this process); returns the results so far."""
        for event in events:
            if event.event_type in self._TYPES:
                self._add(event)
        return self.results

    def update(self, instance: dg.DagsterInstance, run_ids) -> dict[int, RunResult]:
        """Read the new events of ``run_ids``; returns the results so far."""
        for run_id in run_ids:
            while True:
                page = instance.get_records_for_run(run_id, cursor=self._cursors.get(run_id),
                                                    of_type=self._TYPES, limit=1000)
                self.add(record.event_log_entry.dagster_event for record in page.records)
                self._cursors[run_id] = page.cursor
                if not page.has_more:
                    break
        return self.results

    def _step_failed(self, event) -> None:
        """A step failed: its runs without any result were not processed, for its reason
        (e.g. Slurm refused the job array, or the step was interrupted)."""
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None and user.description:
            reason = user.description
        elif interrupted(data.error):
            reason = INTERRUPTED
        else:
            reason = data.error.message.strip() if data.error else "the step failed"
        self.not_processed(reason)

    def _run_failed(self, event) -> None:
        """A Dagster run failed outside its steps (e.g. Ctrl-C between them): its runs
        without any result were not processed."""
        error = event.job_failure_data.error
        self.not_processed(INTERRUPTED if interrupted(error)
                           else (event.message or "its Dagster run failed").strip())

    def not_processed(self, reason: str) -> None:
        """The runs without any result so far were not processed, for ``reason``."""
        for result in self.results.values():
            if not result.names() and result.run_error is None:
                result.run_error = reason

    def done(self, names: set[str]) -> int:
        """How many runs have a result for each of ``names``."""
        return sum(1 for r in self.results.values() if r.names() >= names)

    def _add(self, event) -> None:
        if event.is_step_failure:
            self._step_failed(event)
            return
        if event.is_run_failure:
            self._run_failed(event)
            return
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


def report(results: dict[int, RunResult], no_data: list[int],
           proposal: int) -> tuple[list[str], list[int]]:
    """(lines to print, runs not processed) of a finished reprocess."""
    lines, not_processed = [], list(no_data)
    run_errors: dict[str, list[int]] = {}   # one line per reason, naming its runs
    for run, result in sorted(results.items()):
        if result.run_error is not None or not result.names():
            reason = result.run_error or "no result came back (see the Dagster run's logs)"
            run_errors.setdefault(reason.splitlines()[0], []).append(run)
        else:
            for name, error in sorted(result.failed.items()):
                lines.append(f"r{run} {name}: {error.splitlines()[0] if error else 'failed'}")
        if not result.processed:
            not_processed.append(run)
    for reason, runs in run_errors.items():
        lines.append(f"{', '.join(f'r{r}' for r in runs)}: not processed: {reason}")
    n_failed = sum(len(r.failed) for r in results.values() if r.run_error is None)
    total = len(results) + len(no_data)
    lines.append(f"p{proposal}: {total - len(not_processed)} of {total} runs "
                 f"processed, {n_failed} variable failure(s)")
    return lines, sorted(not_processed)
