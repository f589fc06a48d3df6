"""Store one evaluation's fragment into a DAMNIT folder, safely.

:func:`store_fragment` is the only way results reach ``extracted_data/p{P}_r{R}.h5`` and
``runs.sqlite``:

1. take the run's file lock ``extracted_data/p{P}_r{R}.h5.lock`` (``flock``: released by
   the kernel when the holder dies, so a killed writer never leaves a stale lock), so
   writers of the same run (raw pass, proc pass, cluster job) take turns and never lose
   each other's variables;
2. write the merged run file under a temporary name in the same folder, ``fsync`` it and
   ``os.replace`` it over the old one: at any instant the run file is the old or the new
   version, never a half-written one, even after ``kill -9`` or a power cut; temporary
   files of killed writers are removed by the next writer, and so are the fragments and
   partial files of evaluations of that run whose process is gone (:mod:`.leftovers`);
3. still under the lock, update ``runs.sqlite`` in one transaction;
4. delete the fragment. If anything fails, the fragment is kept and storing it again is
   safe (a store is idempotent), so a crash between steps 2 and 3 is repaired by a retry.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from tempfile import mkstemp

import h5py
from filelock import FileLock, Timeout

from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.hdf5 import fragment_of, merge_into_new_file
from damnit_dagster.storage.layout import FILE_MODE, DamnitPaths, make_shared_dir
from damnit_dagster.storage.leftovers import TMP_SUFFIX, remove_stale
from damnit_dagster.storage.values import check_name, decode_value, encode_row

#: How long a writer waits for another writer of the same run before giving up.
LOCK_TIMEOUT = 600.0


class StorageError(RuntimeError):
    """Results could not be stored; the message names the files involved."""


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_lock(damnit_dir, proposal: int, run: int, timeout: float = LOCK_TIMEOUT) -> FileLock:
    """The lock serialising all writes of one run (use as a context manager)."""
    paths = DamnitPaths(damnit_dir)
    if not paths.extracted_dir.is_dir():
        make_shared_dir(paths.extracted_dir)
    return FileLock(paths.run_lock(proposal, run), timeout=timeout, mode=FILE_MODE,
                    fallback_to_soft=False)


def write_run_file(paths: DamnitPaths, proposal: int, run: int, fragment,
                   records: dict[str, dict] | None = None,
                   replaced: set[str] | None = None) -> set[str]:
    """Merge a fragment (its path, or the fragment open for reading) and the provenance
    ``records`` of its variables into the run's HDF5 file atomically (caller holds the
    run lock). Returns the names replaced (as :func:`.hdf5.merge_into_new_file`)."""
    run_file = paths.run_file(proposal, run)
    fd, tmp = mkstemp(dir=paths.extracted_dir, prefix=f"{run_file.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        replaced = merge_into_new_file(run_file if run_file.exists() else None,
                                       fragment, tmp, records, replaced)
        _fsync(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, run_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(paths.extracted_dir)  # make the rename itself durable
    return replaced


def store_fragment(damnit_dir, proposal: int, run: int, fragment_path, *,
                   lock_timeout: float = LOCK_TIMEOUT, delete_fragment: bool = True,
                   records: dict[str, dict] | None = None) -> dict:
    """Merge ``fragment_path`` into run ``run``'s HDF5 file and ``runs.sqlite``, with the
    provenance ``records`` of its variables (:mod:`.provenance`) if given: the values and
    their records are written together.

    Returns the stored summaries by name, decoded as ``damnit.api`` would return them
    (``None`` for errors and cleared variables; ``start_time`` included). The fragment
    is deleted after a successful store (unless ``delete_fragment=False``).
    """
    paths = DamnitPaths(damnit_dir)
    fragment_path = Path(fragment_path)
    if not paths.db_file.is_file():
        raise StorageError(f"No DAMNIT database at {paths.db_file}; create the folder "
                           "first (init_damnit_dir)")
    with contextlib.ExitStack() as stack:
        try:
            ffrag = stack.enter_context(h5py.File(fragment_path, "r"))
            fragment = fragment_of(ffrag)
        except (OSError, KeyError) as e:
            raise StorageError(f"Cannot read the fragment {fragment_path}: {e}") from e
        for name in fragment.names:  # before anything is written
            try:
                check_name(name)
            except ValueError as e:
                raise StorageError(f"{fragment_path}: {e}") from None

        lock = run_lock(paths.root, proposal, run, lock_timeout)
        try:
            with lock:
                remove_stale(paths, proposal, run, writer_holds_lock=True)
                try:
                    write_run_file(paths, proposal, run, ffrag, records, fragment.names)
                except OSError as e:
                    raise StorageError(f"Cannot write {paths.run_file(proposal, run)} from "
                                       f"{fragment_path}: {e}") from e
                with DamnitDB(paths.db_file) as db:
                    db.set_run_values(proposal, run, fragment.rows,
                                      fragment.provenance or "context.py")
        except Timeout:
            raise StorageError(f"Timed out after {lock_timeout} s waiting for "
                               f"{paths.run_lock(proposal, run)} (another writer of "
                               f"p{proposal} r{run} holds it)") from None

    if delete_fragment:
        fragment_path.unlink(missing_ok=True)
    return {name: _summary(row) for name, row in fragment.rows.items()}


def _summary(row):
    if row.value is None:
        return None
    encoded = encode_row(row)
    return decode_value(encoded["value"], encoded["summary_type"])
