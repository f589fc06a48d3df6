"""The daemon's doorbell: storing an event in the inbox wakes a waiting loop, and the
sensor may then tick within its minimum interval; reprocessing runs are niced."""
import socket
import threading
import time

from damnit_dagster.events.inbox import EventInbox, wake_address
from damnit_dagster.plugins.launcher import LOW_PRIORITY_NICE, low_priority_nice
from damnit_dagster.plugins.wakeup import Doorbell, WakeableShutdown, rung_since_last_tick


def test_storing_an_event_rings_the_inbox_doorbell(tmp_path):
    inbox = EventInbox(tmp_path / "events.sqlite")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + wake_address(inbox.path))
        sock.settimeout(30)
        inbox.add("migration", 1234, 5)
        assert sock.recv(64) == b"!"
    inbox.add("migration", 1234, 6)   # nobody listening: stored all the same
    assert [e.run for e in inbox.after(0, 1234)] == [5, 6]


def test_a_ring_wakes_the_sensor_loop_and_lifts_its_minimum_interval(tmp_path):
    inbox = EventInbox(tmp_path / "events.sqlite")
    doorbell = Doorbell(wake_address(inbox.path))
    shutdown = threading.Event()
    assert not rung_since_last_tick(doorbell, elapsed=0.5)
    t0 = time.monotonic()
    threading.Timer(0.2, inbox.add, ("migration", 1234, 5)).start()
    assert WakeableShutdown(shutdown, doorbell).wait(600) is False
    assert time.monotonic() - t0 < 600            # woken, not timed out
    assert rung_since_last_tick(doorbell, elapsed=60)   # a tick started before the ring
    shutdown.set()
    assert WakeableShutdown(shutdown, doorbell).wait(600) is True


def test_reprocessing_runs_are_niced():
    assert low_priority_nice({"dagster/priority": "-10"}) == LOW_PRIORITY_NICE
    assert low_priority_nice({"dagster/priority": "10"}) == 0
    assert low_priority_nice({}) == 0



def test_a_backfill_ring_wakes_the_backfill_loop_not_the_sensor(tmp_path):
    from damnit_dagster.events.inbox import ring
    from damnit_dagster.plugins.wakeup import BACKFILL_ADDED, BACKFILL_RING, ShutdownOrWake

    address = wake_address(tmp_path / "events.sqlite")
    doorbell = Doorbell(address)
    shutdown = threading.Event()
    BACKFILL_ADDED.clear()
    t0 = time.monotonic()
    threading.Timer(0.2, ring, (address, BACKFILL_RING)).start()
    assert ShutdownOrWake(shutdown, BACKFILL_ADDED).wait(600) is False
    assert time.monotonic() - t0 < 60             # woken, not timed out
    assert not BACKFILL_ADDED.is_set()            # the next wait waits again
    assert not doorbell.hot() and not doorbell.rung.is_set()   # the sensor was not woken
    shutdown.set()
    assert ShutdownOrWake(shutdown, BACKFILL_ADDED).wait(600) is True
