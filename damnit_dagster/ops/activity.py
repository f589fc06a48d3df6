"""What people read in ``amore.log``: the events a backend received and the Dagster runs
it finished, one line each, and nothing while it is idle.

Dagster's own processes log to the instance's ``logs/`` folder on local disk instead (see
:mod:`.backend`); this follows the inbox and the instance's run records from the
backend's main process.
"""
from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from damnit_dagster.defs import tags as damnit_tags
from damnit_dagster.events.inbox import EventInbox

log = logging.getLogger("damnit")

#: How far back a finished run is still looked for (its record may be written late).
_LOOKBACK = timedelta(minutes=5)


def describe_run(record) -> str:
    """``r5 (migration)`` or ``r1-r20 (reprocess)``: what a Dagster run processed."""
    tags = record.dagster_run.tags
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    runs = (f"r{start}" if start == end else f"r{start}-r{end}") if start else \
        f"r{tags.get('dagster/partition') or tags.get('damnit/run', '?')}"
    trigger = tags.get(damnit_tags.TRIGGER) or ("reprocess" if "dagster/backfill" in tags else
                                             "reprocess" if start else "run")
    return f"{runs} ({trigger})"


class ActivityLog:
    """Logs new inbox events of ``proposal`` and newly finished Dagster runs."""

    def __init__(self, inbox: EventInbox, proposal: int, instance):
        self.inbox, self.proposal, self.instance = inbox, proposal, instance
        self.last_event = inbox.last_id()
        self.since = datetime.now(UTC)
        self.reported: dict[str, datetime] = {}

    def poll(self) -> None:
        """Log what happened since the last call."""
        for event in self.inbox.after(self.last_event, self.proposal):
            log.info("event %d: %s of p%d r%d (%s)", event.id, event.kind, event.proposal,
                     event.run, event.source)
            self.last_event = event.id
        self._finished_runs()

    def _finished_runs(self) -> None:
        import dagster as dg

        records = self.instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS,
                                            dg.DagsterRunStatus.FAILURE,
                                            dg.DagsterRunStatus.CANCELED],
                                  updated_after=datetime.now(UTC) - _LOOKBACK),
            order_by="update_timestamp", ascending=True)
        for record in records:
            run_id = record.dagster_run.run_id
            if run_id in self.reported or record.update_timestamp < self.since:
                continue
            self.reported[run_id] = record.update_timestamp
            status = record.dagster_run.status.value.lower()
            took = ""
            if record.start_time and record.end_time:
                took = f" in {record.end_time - record.start_time:.1f} s"
            line = f"Dagster run {run_id[:8]} {describe_run(record)}: {status}{took}"
            (log.warning if status != "success" else log.info)(line)
        horizon = datetime.now(UTC) - 2 * _LOOKBACK
        self.reported = {k: v for k, v in self.reported.items() if v > horizon}


def follow(activity: ActivityLog, stop: threading.Event, interval: float = 1.0) -> None:
    """Poll ``activity`` every ``interval`` seconds until ``stop`` is set."""
    while not stop.wait(interval):
        try:
            activity.poll()
        except Exception as e:  # a busy SQLite file must not end the backend's log
            log.warning("could not read the backend's activity: %s", e)
