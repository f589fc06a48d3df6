"""Where the Dagster instance and our own backend state live.

Dagster's SQLite storage must be on local disk, never in the (shared, often GPFS)
proposal folder: it is ``$DAGSTER_HOME``, by default ``~/.local/state/damnit-dagster``.
The event inbox and the last good copy of each context file live there too.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

#: The instance configuration shipped with the project (run queue, intervals, storage).
INSTANCE_TEMPLATE = Path(__file__).resolve().parent.parent / "dagster_home" / "dagster.yaml"


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, or the default on local disk; created with its dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME")
                or Path.home() / ".local" / "state" / "damnit-dagster").absolute()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and INSTANCE_TEMPLATE.exists():
        shutil.copyfile(INSTANCE_TEMPLATE, config)
    return home


def prepare_instance() -> Path:
    """Create the instance's storage once, before several processes open it at the same
    time (a daemon and a CLI creating a fresh SQLite storage together race on its tables)."""
    import dagster as dg
    from filelock import FileLock

    home = dagster_home()
    with FileLock(home / ".prepare.lock"):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_dynamic_partitions("damnit_dagster_storage_check")
    return home


def inbox_path() -> Path:
    """The event inbox shared by the Kafka bridge, ``damnit-dagster event`` and the sensor."""
    return dagster_home() / "damnit_events.sqlite"
