"""Where the Dagster instance and our own backend state of a DAMNIT folder live.

Each DAMNIT folder has its own Dagster instance, as each has its own Supervisor and
backend: ``$XDG_STATE_HOME/damnit-dagster/<db_id>`` (by default
``~/.local/state/damnit-dagster/<db_id>``), keyed by the ``db_id`` of the folder's
``runs.sqlite``. It is on local disk, never in the (shared, often GPFS) proposal folder,
and holds Dagster's SQLite storage, the event inbox, the last good copy of the context
file, the backend's lock and status, and the logs of Dagster's own processes
(``backend_logs/``).

An explicitly set ``DAGSTER_HOME`` is used as it is, for whichever folder a command acts
on; a backend then holds it alone (see :mod:`.backend`).
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

#: The instance configuration shipped with the project (run queue, intervals, storage).
INSTANCE_TEMPLATE = Path(__file__).resolve().parents[2] / "dagster_home" / "dagster.yaml"
#: A file in each per-folder instance naming the folder it belongs to, for people.
FOLDER_NOTE = "damnit_folder.txt"


def state_root() -> Path:
    """The parent of the per-folder instances: ``$XDG_STATE_HOME/damnit-dagster``."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base).absolute() / "damnit-dagster"


def folder_db_id(damnit_dir) -> str:
    """The ``db_id`` of a DAMNIT folder's ``runs.sqlite`` (read only, no migration)."""
    db_file = Path(damnit_dir).absolute() / "runs.sqlite"
    if not db_file.is_file():
        raise FileNotFoundError(f"{db_file} does not exist")
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT value FROM metameta WHERE key = 'db_id'").fetchone()
    finally:
        conn.close()
    if row is None or not row[0]:
        raise ValueError(f"{db_file} has no db_id; open it once with damnit-dagster db-config")
    return str(row[0])


def dagster_home(damnit_dir=None) -> Path:
    """The Dagster instance of ``damnit_dir`` (default ``$DAMNIT_DIR``): ``$DAGSTER_HOME``
    when set, else the folder's own one; created with its dagster.yaml."""
    explicit = os.environ.get("DAGSTER_HOME")
    if explicit:
        home = Path(explicit).absolute()
    else:
        damnit_dir = damnit_dir or os.environ.get("DAMNIT_DIR")
        if not damnit_dir:
            raise RuntimeError("no DAMNIT folder to find the Dagster instance of: "
                               "set DAMNIT_DIR or DAGSTER_HOME")
        damnit_dir = Path(damnit_dir).absolute()
        home = state_root() / folder_db_id(damnit_dir)
        home.mkdir(parents=True, exist_ok=True)
        note = home / FOLDER_NOTE
        if not note.exists() or note.read_text().strip() != str(damnit_dir):
            note.write_text(f"{damnit_dir}\n")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and INSTANCE_TEMPLATE.exists():
        shutil.copyfile(INSTANCE_TEMPLATE, config)
    return home


def use_instance_of(damnit_dir) -> Path:
    """Point this process (and the processes it starts) at the instance of ``damnit_dir``."""
    home = dagster_home(damnit_dir)
    os.environ["DAGSTER_HOME"] = str(home)
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


def logs_dir() -> Path:
    """Where the logs of the backend's Dagster processes go (local disk, not amore.log).

    Not ``logs/``: Dagster takes that folder of its home for its telemetry queue, and
    empties it."""
    path = dagster_home() / "backend_logs"
    path.mkdir(exist_ok=True)
    return path
