"""``python -m damnit_dagster.plugins.daemon run -w workspace.yaml``: ``dagster-daemon`` with
sensor and run-queue loops woken by events, and a faster backfill loop.

Dagster's sensor daemon evaluates sensors at most every 5 s whatever their
``minimum_interval_seconds`` (``MIN_INTERVAL_LOOP_TIME`` in ``dagster._daemon.sensor``),
so a new-data event would wait 2.5 s on average before its run is even requested. This
entry point wakes the sensor loop when an event is stored in the inbox (the doorbell at
``$DAMNIT_WAKE_ADDRESS``) and the run-queue loop when a run is queued
(:mod:`.wakeup`); between events the sensor loop passes every
``$DAMNIT_SENSOR_LOOP_SECONDS`` (default :data:`SENSOR_LOOP_SECONDS`, a catch-up path;
:data:`POLL_LOOP_SECONDS` without a doorbell). It then runs the stock ``dagster-daemon``
command with the same arguments; everything else is Dagster's. Before that, the run-retry
daemon's cursors are set if missing (:func:`start_retry_cursors`), and with the fork-server
run launcher configured its warm process is started (:func:`prewarm_run_workers`). An idle
tick costs one gRPC call to the code server and one skipped-tick row (purged after a day,
see ``retention`` in dagster.yaml).
"""
from __future__ import annotations

import os
import sys

#: Seconds between two passes of the sensor daemon over the sensors when events wake it ...
SENSOR_LOOP_SECONDS = 5.0
#: ... and when nothing wakes it (no ``$DAMNIT_WAKE_ADDRESS``).
POLL_LOOP_SECONDS = 0.5
#: Seconds between two passes of the backfill daemon (Dagster's default is 30, which a
#: reprocess command would wait for before anything starts).
BACKFILL_LOOP_SECONDS = 2.0


def main() -> int:
    from damnit_dagster.plugins.dagster_private import (
        daemon_controller,
        dagster_daemon_main,
        sensor_daemon,
    )
    from damnit_dagster.plugins.wakeup import install

    for module, name in ((sensor_daemon, "MIN_INTERVAL_LOOP_TIME"),
                         (daemon_controller, "DEFAULT_DAEMON_INTERVAL_SECONDS")):
        if not hasattr(module, name):
            raise RuntimeError(f"this Dagster has no {module.__name__}.{name}: "
                               f"damnit_dagster.plugins.daemon needs updating")
    doorbell = install(os.environ.get("DAMNIT_WAKE_ADDRESS"))
    sensor_daemon.MIN_INTERVAL_LOOP_TIME = float(
        os.environ.get("DAMNIT_SENSOR_LOOP_SECONDS")
        or (SENSOR_LOOP_SECONDS if doorbell else POLL_LOOP_SECONDS))
    daemon_controller.DEFAULT_DAEMON_INTERVAL_SECONDS = float(
        os.environ.get("DAMNIT_BACKFILL_LOOP_SECONDS") or BACKFILL_LOOP_SECONDS)
    if os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        instance = dg.DagsterInstance.get()
        start_retry_cursors(instance)
        prewarm_run_workers(instance)
    sys.argv[0] = "dagster-daemon"
    return dagster_daemon_main()


def start_retry_cursors(instance) -> None:
    """Where Dagster's run-retry daemon starts reading run failures, set before any run starts.

    The retry daemon (``EventLogConsumerDaemon``) finds the runs to retry from a cursor in
    the event log; when it has none, its first pass starts it at the log's end. A backend
    killed in its first seconds, before that pass ended (a first batch runs within a
    second of the start), would then on restart start past the failure that run
    monitoring records for the killed run, and never retry it. Set here, the cursors exist
    before the daemon can launch a run. Existing cursors are left as they are.
    """
    from damnit_dagster.plugins.dagster_private import event_log_consumer

    if not instance.run_retries_enabled:
        return
    keys = {event_log_consumer._create_cursor_key(t)
            for t in event_log_consumer.DAGSTER_EVENT_TYPES}
    missing = keys - set(instance.daemon_cursor_storage.get_cursor_values(keys))
    if missing:
        top = str(instance.event_log_storage.get_maximum_record_id() or 0)
        instance.daemon_cursor_storage.set_cursor_values({k: top for k in missing})


def prewarm_run_workers(instance) -> None:
    """With :class:`~damnit_dagster.plugins.launcher.ForkServerRunLauncher` configured, start its
    warm process now rather than at the first run."""
    from damnit_dagster.plugins.launcher import ForkServerRunLauncher

    if isinstance(instance.run_launcher, ForkServerRunLauncher):
        instance.run_launcher.prewarm()


if __name__ == "__main__":
    sys.exit(main())
