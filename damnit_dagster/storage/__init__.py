"""DAMNIT-compatible storage: ``runs.sqlite`` (schema v4) and per-run HDF5 files.

Pure Python (no Dagster import): it also runs inside Slurm jobs.
"""
from damnit_dagster.storage.database import SETTING_DEFAULTS, DamnitDB
from damnit_dagster.storage.folder import init_damnit_dir
from damnit_dagster.storage.hdf5 import Fragment, read_fragment
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.schema import SCHEMA_VERSION
from damnit_dagster.storage.values import ReducedValue
from damnit_dagster.storage.writer import StorageError, run_lock, store_fragment

__all__ = [
    "DamnitDB", "DamnitPaths", "Fragment", "ReducedValue", "SCHEMA_VERSION",
    "SETTING_DEFAULTS", "StorageError", "init_damnit_dir", "read_fragment", "run_lock",
    "store_fragment",
]
