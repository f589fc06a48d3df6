"""Waking the daemon's sensor and run-queue loops when there is work, instead of polling.

Two signals, both inside the daemon process (``python -m damnit_dagster.plugins.daemon``):

* the **doorbell**: a Unix datagram socket (Linux abstract namespace, address from
  ``$DAMNIT_WAKE_ADDRESS``) on which the inbox's writers ring after storing an event
  (:func:`damnit_dagster.events.inbox.wake_address`). A ring wakes the sensor loop at once,
  lets the sensor tick even within its ``minimum_interval_seconds``, and keeps the loop
  fast for :data:`HOT_SECONDS` (a tick already in flight is followed by another);
* a ring saying ``BACKFILL_RING`` (``reprocess`` added a backfill) wakes the backfill
  loop instead, which starts the backfill's runs at once;
* **runs submitted**: :class:`WakingQueuedRunCoordinator` is Dagster's
  ``QueuedRunCoordinator`` that also wakes the run-queue loop of its own process, so a run
  the sensor queues is dequeued (priority, limits: Dagster's own) without waiting for the
  next pass.

Lost rings cost only time: the loops still pass at their intervals.
"""
from __future__ import annotations

import logging
import socket
import sys
import threading
import time

from damnit_dagster.plugins.dagster_private import QueuedRunCoordinator

log = logging.getLogger(__name__)

#: After a ring, the sensor loop passes at least this often ...
HOT_PASS_SECONDS = 0.05
#: ... for this long.
HOT_SECONDS = 2.0

#: Set when a run is submitted in this process; the run-queue loop waits on it.
RUNS_SUBMITTED = threading.Event()
#: What a ring says when a backfill was added (any other ring: an event was stored).
BACKFILL_RING = b"backfill"
#: Set when the doorbell says a backfill was added (``BACKFILL_RING``); the backfill loop
#: waits on it.
BACKFILL_ADDED = threading.Event()


class Doorbell:
    """Receives rings at ``address`` (abstract Unix datagram socket) in a thread."""

    def __init__(self, address: str):
        self.last_ring = 0.0
        self.rung = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + address)
        threading.Thread(target=self._listen, name="damnit-doorbell", daemon=True).start()

    def _listen(self) -> None:
        while True:
            try:
                message = self._sock.recv(64)
            except OSError:
                return
            if message == BACKFILL_RING:
                BACKFILL_ADDED.set()
                continue
            self.last_ring = time.time()
            self.rung.set()

    def hot(self) -> bool:
        """Rung within the last :data:`HOT_SECONDS`."""
        return time.time() - self.last_ring < HOT_SECONDS


class WakeableShutdown:
    """The daemon's shutdown event, whose ``wait`` also returns when the doorbell rings."""

    def __init__(self, shutdown: threading.Event, doorbell: Doorbell):
        self._shutdown, self._doorbell = shutdown, doorbell

    def is_set(self) -> bool:
        return self._shutdown.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._doorbell.hot():
            timeout = HOT_PASS_SECONDS if timeout is None else min(timeout, HOT_PASS_SECONDS)
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        self._doorbell.rung.clear()
        while not self._shutdown.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._doorbell.rung.wait(min(left, 0.5)):
                break
        return self._shutdown.is_set()


def rung_since_last_tick(doorbell: Doorbell, elapsed: float | None) -> bool:
    """True when the doorbell rang after a sensor's last tick started (``elapsed`` ago)."""
    return elapsed is not None and time.time() - doorbell.last_ring < elapsed


def waking_queue_loop(self, workspace_process_context, shutdown_event):
    """``core_loop`` of Dagster's run-queue daemon: its iteration, then a wait of its
    interval that ends early when a run is submitted in this process (ticks the
    heartbeat every 0.5 s, as Dagster's ``IntervalDaemon`` does)."""
    from damnit_dagster.plugins.dagster_private import SpanMarker, serializable_error_info

    while True:
        RUNS_SUBMITTED.clear()
        yield SpanMarker.START_SPAN
        try:
            yield from self.run_iteration(workspace_process_context)
        except Exception:
            error_info = serializable_error_info(sys.exc_info())
            self._logger.error("Caught error:\n%s", error_info)
            yield error_info
        yield SpanMarker.END_SPAN
        deadline = time.monotonic() + self.interval_seconds
        while not shutdown_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or RUNS_SUBMITTED.wait(min(left, 0.5)):
                break
            yield None
        yield None


class ShutdownOrWake:
    """The daemon's shutdown event, whose ``wait`` also returns when ``wake`` is set (and
    then clears it): the backfill loop waits on it between its passes."""

    def __init__(self, shutdown: threading.Event, wake: threading.Event):
        self._shutdown, self._wake = shutdown, wake

    def is_set(self) -> bool:
        return self._shutdown.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while not self._shutdown.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, 0.5)):
                break
        self._wake.clear()
        return self._shutdown.is_set()


class WakingQueuedRunCoordinator(QueuedRunCoordinator):
    """Dagster's run queue; a run submitted in the daemon's process is dequeued at once.

    Instance configuration (``dagster.yaml``), with ``QueuedRunCoordinator``'s settings::

        run_coordinator:
          module: damnit_dagster.plugins.wakeup
          class: WakingQueuedRunCoordinator
    """

    def submit_run(self, context):
        run = super().submit_run(context)
        RUNS_SUBMITTED.set()
        return run


def install(address: str | None) -> Doorbell | None:
    """Patch the daemon's run-queue and backfill loops, and its sensor loop to the doorbell
    at ``address``."""
    from damnit_dagster.plugins.dagster_private import (
        BackfillDaemon,
        QueuedRunCoordinatorDaemon,
        daemon_classes,
        sensor_daemon,
    )

    QueuedRunCoordinatorDaemon.core_loop = waking_queue_loop
    backfill_core_loop = BackfillDaemon.core_loop

    def backfill_loop(self, workspace_process_context, shutdown_event):
        return backfill_core_loop(self, workspace_process_context,
                                  ShutdownOrWake(shutdown_event, BACKFILL_ADDED))

    BackfillDaemon.core_loop = backfill_loop
    if not address:
        return None
    try:
        doorbell = Doorbell(address)
    except OSError as e:  # another daemon already answers this inbox: poll only
        log.warning("not waking on events (%s): the sensor polls", e)
        return None
    under_min_interval = sensor_daemon.is_under_min_interval
    sensor_core_loop = daemon_classes.SensorDaemon.core_loop

    def is_under_min_interval(state, remote_sensor, *args, **kwargs):
        if rung_since_last_tick(doorbell, sensor_daemon.get_elapsed(state)):
            return False
        return under_min_interval(state, remote_sensor, *args, **kwargs)

    def core_loop(self, workspace_process_context, shutdown_event):
        return sensor_core_loop(self, workspace_process_context,
                                WakeableShutdown(shutdown_event, doorbell))

    sensor_daemon.is_under_min_interval = is_under_min_interval
    daemon_classes.SensorDaemon.core_loop = core_loop
    return doorbell
