"""The event sensor: new-data events in the inbox become run partitions and run requests.

A migration event requests the ``raw`` job for the run, a calibration event the ``proc``
job, as DAMNIT's listener does. The sensor's cursor remembers the last inbox event it
handled, so each event is acted on once; within one ``duplicate_window`` a repeated
event for the same run and kind is logged and dropped. An event whose run folder does
not exist yet (data still arriving) waits, re-checked every tick, for up to
``folder_wait`` seconds. An invalid event is logged with its reason and never stops the
sensor.

Events that arrive together (a burst, a replay after a reconnect, events gathered while
the sensor was busy) are coalesced: per kind, the runs that are contiguous among the
partitions become one ranged run (as a single-run backfill), whose step evaluates them in
parallel and reports each run's partition as it completes. A lone event is a
single-partition run. Live runs carry a higher run-queue priority than reprocessing.

On its very first tick the sensor does not replay a long history: events older than
``startup_window`` are skipped (with a log line) because old runs are for ``reprocess``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg

from damnit_dagster.defs import tags
from damnit_dagster.defs.jobs import job_name
from damnit_dagster.defs.partitions import partition_ranges
from damnit_dagster.defs.tags import processing_id
from damnit_dagster.events.gui_updates import GuiUpdates
from damnit_dagster.events.inbox import EventInbox, RunEvent
from damnit_dagster.plugins.dagster_private import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)


@dataclass
class SensorCursor:
    """What the sensor remembers between ticks (stored as JSON)."""

    last_id: int = 0
    waiting: list[int] = field(default_factory=list)        # ids whose folder is missing
    recent: dict[str, float] = field(default_factory=dict)  # "kind:run" -> time requested

    @classmethod
    def load(cls, text: str | None) -> SensorCursor | None:
        return cls(**json.loads(text)) if text else None

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class EventSensorSettings:
    """Tunables of the event sensor; the defaults favour latency.

    ``minimum_interval_seconds=1`` is the shortest Dagster allows (0 means its default,
    30 s). The sensor daemon passes over the sensors every 5 s with stock
    ``dagster-daemon``, every 0.5 s with :mod:`damnit_dagster.plugins.daemon`.
    """

    minimum_interval_seconds: int = 1
    max_events_per_tick: int = 1000
    duplicate_window: float = 60.0
    folder_wait: float = 120.0
    startup_window: float = 600.0


def run_folder(proposal_dir: Path, event: RunEvent) -> Path:
    """Where the event's data must be: ``raw/r0007`` or ``proc/r0007``."""
    return Path(proposal_dir) / event.data / f"r{event.run:04d}"


def plan_tick(events: list[RunEvent], cursor: SensorCursor, proposal_dir: Path | None,
              now: float, settings: EventSensorSettings,
              log) -> tuple[list[RunEvent], SensorCursor]:
    """Decide which events to act on this tick; returns them and the next cursor.

    Pure function of its inputs (besides checking folders), so it is easy to test.
    """
    new_cursor = SensorCursor(
        last_id=max([cursor.last_id, *(e.id for e in events)]),
        recent={k: t for k, t in cursor.recent.items() if now - t < settings.duplicate_window},
    )
    to_run = []
    for event in events:
        if proposal_dir is not None and not run_folder(proposal_dir, event).is_dir():
            if now - event.received_at < settings.folder_wait:
                new_cursor.waiting.append(event.id)
            else:
                log.warning(f"Dropping event {event.id} ({event.kind} of run {event.run}): data "
                            f"folder {run_folder(proposal_dir, event)} still does not exist "
                            f"after {settings.folder_wait:.0f} s")
            continue
        key = f"{event.kind}:{event.run}"
        if key in new_cursor.recent:
            log.info(f"Event {event.id}: duplicate {event.kind} of run {event.run} "
                     f"within {settings.duplicate_window:.0f} s, already requested")
            continue
        new_cursor.recent[key] = now
        to_run.append(event)
    return to_run, new_cursor


def coalesce(events: list[RunEvent], partition_keys: list[str]) -> list[list[RunEvent]]:
    """The events as batches, one per ranged run: per kind, the events whose runs are
    contiguous in ``partition_keys`` (which holds all their runs), in partition order;
    the batches in the order their first event arrived."""
    position = {key: i for i, key in enumerate(partition_keys)}
    batches = []
    for kind in {e.kind for e in events}:
        by_run = {e.run: e for e in events if e.kind == kind}
        for first, last in partition_ranges(partition_keys, list(by_run)):
            batches.append([by_run[int(k)] for k in
                            partition_keys[position[first]:position[last] + 1]])
    return sorted(batches, key=lambda batch: min(e.id for e in batch))


def announce_pending(gui: GuiUpdates, proposal: int, batch: list[RunEvent],
                     requests: list[dg.RunRequest]) -> None:
    """DAMNIT's GUI shows the runs as queued until their processing starts."""
    for request in requests:
        for event in batch:
            gui.processing_state(processing_id(request.run_key, event.run), proposal,
                                 event.run, event.data, "PENDING")


def build_event_sensor(*, proposal: int, inbox_path, partitions_def: dg.DynamicPartitionsDefinition,
                       jobs, proposal_dir: Path | None,
                       settings: EventSensorSettings = EventSensorSettings(),
                       gui: Callable[[], GuiUpdates] | None = None,
                       head_start: Callable[[int], bool] | None = None) -> dg.SensorDefinition:
    """The sensor for one proposal reading the inbox at ``inbox_path``.

    ``jobs`` must contain the jobs named ``raw`` and ``proc``; when it also has
    ``raw_cluster``/``proc_cluster`` (the context has ``cluster=True`` variables), each
    event requests that follow-up run too, as DAMNIT submits its second Slurm job.
    ``proposal_dir`` is where the run folders appear (None skips the folder check).
    ``gui()`` gives the folder's :class:`GuiUpdates`, told each request is ``PENDING``.
    ``head_start(run)`` starts evaluating a lone migration event's run at once, for its
    step to take over (``defs.assets.head_starter``).
    """
    job_names = {job.name for job in jobs}

    def requests_for(batch: list[RunEvent]) -> list[dg.RunRequest]:
        first, last = batch[0], batch[-1]
        ids = sorted(e.id for e in batch)
        run_tags = {tags.TRIGGER: first.kind, tags.PRIORITY: tags.LIVE_PRIORITY}
        if len(batch) == 1:
            partition, key = str(first.run), f"event-{first.id}"
            run_tags.update({tags.RUN: str(first.run), tags.EVENT_ID: str(first.id)})
        else:
            partition, key = None, f"events-{ids[0]}-{ids[-1]}"
            run_tags.update({tags.EVENT_ID: f"{ids[0]}-{ids[-1]}",
                             ASSET_PARTITION_RANGE_START_TAG: str(first.run),
                             ASSET_PARTITION_RANGE_END_TAG: str(last.run)})
        requests = [dg.RunRequest(job_name=job_name(first.data), partition_key=partition,
                                  run_key=key, tags=run_tags)]
        if job_name(first.data, cluster=True) in job_names:
            requests.append(dg.RunRequest(
                job_name=job_name(first.data, cluster=True), partition_key=partition,
                run_key=f"{key}-cluster", tags={**run_tags, tags.PLACEMENT: "cluster"}))
        return requests

    @dg.sensor(name=f"p{proposal}_run_events", jobs=jobs,
               minimum_interval_seconds=settings.minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Turns migration and calibration events of the proposal into "
                           "processing runs (raw on migration, proc on calibration).")
    def run_events_sensor(context: dg.SensorEvaluationContext):
        inbox = EventInbox(inbox_path)
        now = time.time()
        cursor = SensorCursor.load(context.cursor)
        if cursor is None:  # first tick ever: skip old history
            n_old, last_old = inbox.received_before(proposal, now - settings.startup_window)
            cursor = SensorCursor(last_id=last_old)
            if n_old:
                context.log.info(f"First start: skipping {n_old} events older than "
                                 f"{settings.startup_window:.0f} s (use reprocess for old runs)")
        waiting = inbox.by_ids(cursor.waiting)
        fresh = inbox.after(cursor.last_id, proposal, limit=settings.max_events_per_tick)
        events, new_cursor = plan_tick(waiting + fresh, cursor, proposal_dir, now, settings,
                                       context.log)
        if not events and new_cursor == cursor:
            return dg.SkipReason(f"No new events after event {cursor.last_id}")
        existing = context.instance.get_dynamic_partitions(partitions_def.name)
        new_keys = sorted({str(e.run) for e in events} - set(existing), key=int)
        requests, updates = [], gui() if gui is not None and events else None
        for batch in coalesce(events, [*existing, *new_keys]):
            batch_requests = requests_for(batch)
            requests += batch_requests
            if updates is not None:
                announce_pending(updates, proposal, batch, batch_requests)
            if head_start is not None and len(batch) == 1 and batch[0].data == "raw":
                head_start(batch[0].run)
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=(
                [partitions_def.build_add_request(new_keys)] if new_keys else []),
            cursor=new_cursor.dump())

    return run_events_sensor
