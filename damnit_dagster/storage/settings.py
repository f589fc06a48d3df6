"""The backend settings a user changes with ``damnit-dagster db-config KEY VALUE``.

They live in the ``metameta`` table of ``runs.sqlite``, as in DAMNIT, so DAMNIT's own
``damnit db-config`` and ours read the same values. Each known key has a parser that
checks the value and says what is wrong with it.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path


class SettingError(ValueError):
    """A bad key or value for ``db-config``; the message says what is accepted."""


def parse_memory(text: str) -> int:
    """Bytes in a Slurm-style size: ``25G``, ``512M``, ``2T``, or plain megabytes (``4096``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise SettingError(f"{text!r} is not a memory size (examples: 25G, 512M)")
    number, unit = float(match[1]), (match[2] or "M").upper()
    value = int(number * 1024 ** "KMGT".index(unit) * 1024)
    if value <= 0:
        raise SettingError(f"{text!r} must be more than zero")
    return value


def _positive_int(text: str) -> str:
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise SettingError(f"{text!r} must be at least 1")
    return str(value)


def _memory(text: str) -> str:
    parse_memory(text)
    return str(text).strip().upper()


def _slurm_time(text: str) -> str:
    slurm_time_seconds(text)
    return text.strip()


def slurm_time_seconds(text: str) -> int:
    """Seconds in a Slurm time limit: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``,
    ``D-HH:MM`` or ``D-HH:MM:SS``."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?", str(text).strip())
    if not match:
        raise SettingError(f"{text!r} is not a Slurm time limit (examples: 02:00:00, 1-00:00:00)")
    days, first, second, third = match.groups()
    if days is not None:   # D-HH[:MM[:SS]]
        h, m, s = int(first), int(second or 0), int(third or 0)
    elif third is not None:   # HH:MM:SS
        h, m, s = int(first), int(second), int(third)
    else:   # MM[:SS]
        h, m, s = 0, int(first), int(second or 0)
    seconds = ((int(days or 0) * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise SettingError(f"{text!r} must be more than zero")
    return seconds


def format_duration(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24)."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _name(text: str) -> str:
    if not re.fullmatch(r"[\w.\-]+", text.strip()):
        raise SettingError(f"{text!r} is not a valid Slurm name")
    return text.strip()


def _brokers(text: str) -> str:
    brokers = [b.strip() for b in text.split(",") if b.strip()]
    if not brokers or not all(re.fullmatch(r"[\w.\-]+:\d+", b) for b in brokers):
        raise SettingError(f"{text!r} is not a list of host:port Kafka brokers")
    return ",".join(brokers)


def _gui_brokers(text: str) -> str:
    return "none" if text.strip().lower() == "none" else _brokers(text)


#: Days of Dagster runs kept whole when ``retention_days`` is not set.
DEFAULT_RETENTION_DAYS = 30.0


def retention_days(text: str | None) -> float | None:
    """Days of the ``retention_days`` setting (default :data:`DEFAULT_RETENTION_DAYS`);
    None for ``never``."""
    if text is None or str(text).strip() == "":
        return DEFAULT_RETENTION_DAYS
    if str(text).strip().lower() == "never":
        return None
    try:
        days = float(text)
    except ValueError:
        raise SettingError(f"{text!r} is not a number of days or never") from None
    if days <= 0:
        raise SettingError(f"{text!r} must be more than zero days")
    return days


def _retention(text: str) -> str:
    retention_days(text)
    return text.strip().lower()


def _executor(text: str) -> str:
    value = text.strip().lower()
    if value not in ("local", "slurm"):
        raise SettingError(f"{text!r} is not local or slurm")
    return value


def _python(text: str) -> str:
    path = shutil.which(text) or text
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise SettingError(f"{text!r} is not an executable Python interpreter")
    return str(Path(path).absolute())


#: Known keys, their parsers and what they mean.
SETTINGS = {
    "noncluster_cpus": (_positive_int, "CPU cores a non-cluster variable may use (default 4)"),
    "noncluster_mem": (_memory, "memory a non-cluster variable may use (default 25G)"),
    "slurm_partition": (_name, "Slurm partition for cluster=True variables"),
    "slurm_reservation": (_name, "Slurm reservation for cluster=True variables (wins over "
                                 "the partition)"),
    "slurm_time": (_slurm_time, "time limit of every evaluation of a run, Slurm jobs and "
                                "local ones alike (default 02:00:00)"),
    "slurm_clusters": (_name, "value of sbatch --clusters (unset: not passed)"),
    "context_python": (_python, "Python interpreter that evaluates the context file"),
    "concurrent_jobs": (_positive_int, "runs processed at the same time; with Slurm, "
                                       "tasks of a job array running at once (default 15)"),
    "reprocess_executor": (_executor, "where reprocess evaluates non-cluster variables: "
                                      "local (default) or slurm (a job array)"),
    "retention_days": (_retention, "days after which the logs of Dagster runs are "
                                   "trimmed, each run number's latest state kept "
                                   "(default 30; never: keep all)"),
    "slurm_runs_per_task": (_positive_int, "runs evaluated by one task of a reprocess's "
                                           "job array (default: the runs spread evenly "
                                           "over concurrent_jobs tasks)"),
    "proposal": (_positive_int, "proposal number of this folder"),
    "kafka_brokers": (_brokers, "Kafka brokers (host:port,...) announcing new data; unset: "
                                "only the embedded event inbox"),
    "gui_brokers": (_gui_brokers, "Kafka brokers (host:port,...) DAMNIT's GUI gets its "
                                  "updates from, or none; unset: $AMORE_BROKER, else "
                                  "DAMNIT's default broker for folders under /gpfs/exfel/"),
}


def normalise_key(key: str) -> str:
    """DAMNIT accepts ``noncluster-mem`` for ``noncluster_mem``."""
    return key.replace("-", "_")


def parse_setting(key: str, value: str) -> str:
    """Check ``value`` for ``key``; return what to store, or raise :class:`SettingError`."""
    key = normalise_key(key)
    if key not in SETTINGS:
        raise SettingError(f"unknown setting {key!r}; known settings: "
                           f"{', '.join(sorted(SETTINGS))}")
    parser, _ = SETTINGS[key]
    try:
        return parser(value)
    except SettingError as e:
        raise SettingError(f"{key}: {e}") from None
