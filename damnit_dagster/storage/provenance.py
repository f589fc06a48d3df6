"""The provenance record of every stored value, kept next to it in the run's HDF5 file.

``/.provenance/<name>`` holds one JSON text per variable of the run::

    {"status": "ok" | "none" | "error" | "skipped",
     "code_version": ..., "data_version": ...,   # as the Dagster UI shows them
     "inputs": {input name: its data version when this value was computed},
     "source": "raw" | "all",                    # the data the run was opened with
     "host": ..., "time": UTC epoch, "dagster_run_id": ... | null}

It is written with the value, in the same atomic replacement of the run file
(:func:`damnit_dagster.storage.writer.store_fragment`), so the value and its record always
travel together (a variable stored again gets a new record, one stored by DAMNIT loses its
record). ``runs.sqlite``'s ``provenance`` column keeps DAMNIT's meaning
(``context.py`` for context file results). ``/.provenance_index`` holds all of a file's
records as one JSON object, rewritten with them by every store, so that finding what is
stale reads one dataset per run instead of one per variable. A value's data version is
its code version, which folds in the code of everything upstream, as Dagster's tags say.
"""
from __future__ import annotations

import functools
import os
import stat
import time
from dataclasses import dataclass, field

import h5py

from context_loader.stored import read_records

#: Run files whose records are kept in memory while unchanged (a few KB each).
RECORDS_CACHED = 4096


@dataclass(frozen=True)
class Versions:
    """What a step knows of the variables it stores: the code version of each, the saved
    variables each depends on (through transient ones), the Dagster run."""

    code: dict[str, str]
    parents: dict[str, list[str]] = field(default_factory=dict)
    dagster_run_id: str | None = None


def stored_records(run_file) -> dict[str, dict]:
    """The records in a run file, by name (none when the file does not exist). A file
    read before and not replaced since is not read again (``reprocess --stale`` reads
    each run's records to find what is stale, then again when it stores the run)."""
    try:
        st = os.stat(run_file)
    except FileNotFoundError:
        return {}
    if not stat.S_ISREG(st.st_mode):
        return {}
    return dict(_read_records(str(run_file), (st.st_ino, st.st_mtime_ns, st.st_size)))


@functools.lru_cache(maxsize=RECORDS_CACHED)
def _read_records(path: str, identity: tuple) -> dict[str, dict]:
    """The records of the file at ``path`` as it is while ``identity`` (inode, mtime,
    size) holds: a store replaces the file, so its identity changes."""
    with h5py.File(path, "r", locking=False) as f:   # see context_loader.stored
        return read_records(f)


def new_records(report: dict, versions: Versions, old: dict[str, dict]) -> dict[str, dict]:
    """The records of the variables an evaluation ``report`` lists. An input computed in
    the same evaluation has its current data version; one read from the run file has the
    version of its record in ``old`` (the run file's records before this store)."""
    now = time.time()
    computed = set(report["variables"])
    records = {}
    for name, entry in report["variables"].items():
        if name not in versions.code:
            continue
        inputs = {}
        for parent in versions.parents.get(name, ()):
            if parent in computed or parent not in old:
                inputs[parent] = versions.code.get(parent)
            else:
                inputs[parent] = old[parent].get("data_version")
        records[name] = {
            "status": entry.get("status"), "code_version": versions.code[name],
            "data_version": versions.code[name], "inputs": inputs,
            "source": report.get("data_opened"), "host": report.get("host"), "time": now,
            "dagster_run_id": versions.dagster_run_id}
    return records
