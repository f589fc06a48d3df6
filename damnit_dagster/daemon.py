"""``python -m damnit_dagster.daemon run -w workspace.yaml``: ``dagster-daemon`` with a
faster sensor loop.

Dagster's sensor daemon evaluates sensors at most every 5 s whatever their
``minimum_interval_seconds`` (``MIN_INTERVAL_LOOP_TIME`` in ``dagster._daemon.sensor``),
so a new-data event would wait 2.5 s on average before its run is even requested. This
entry point sets that loop time to ``$DAMNIT_SENSOR_LOOP_SECONDS`` (default
:data:`SENSOR_LOOP_SECONDS`) and then runs the stock ``dagster-daemon`` command with the
same arguments; everything else is Dagster's. An idle tick costs one gRPC call to the code
server and one skipped-tick row (purged after a day, see ``retention`` in dagster.yaml).
"""
from __future__ import annotations

import os
import sys

#: Seconds between two passes of the sensor daemon over the sensors.
SENSOR_LOOP_SECONDS = 0.5


def main() -> int:
    import dagster._daemon.sensor as sensor_daemon
    from dagster._daemon.cli import main as dagster_daemon

    loop = float(os.environ.get("DAMNIT_SENSOR_LOOP_SECONDS") or SENSOR_LOOP_SECONDS)
    if not hasattr(sensor_daemon, "MIN_INTERVAL_LOOP_TIME"):
        print("damnit_dagster.daemon: this Dagster has no MIN_INTERVAL_LOOP_TIME; "
              "running with its default sensor loop", file=sys.stderr)
    sensor_daemon.MIN_INTERVAL_LOOP_TIME = loop
    sys.argv[0] = "dagster-daemon"
    return dagster_daemon()


if __name__ == "__main__":
    sys.exit(main())
