"""DAMNIT-compatible storage: ``runs.sqlite`` (schema v4) and per-run HDF5 files.

Pure Python (no Dagster import): it also runs inside Slurm jobs.
"""
from .database import SCHEMA_VERSION, SETTING_DEFAULTS, DamnitDB, ReducedValue
from .hdf5 import Fragment, read_fragment
from .layout import DamnitPaths, init_damnit_dir
from .writer import StorageError, run_lock, store_fragment

__all__ = [
    "DamnitDB", "DamnitPaths", "Fragment", "ReducedValue", "SCHEMA_VERSION",
    "SETTING_DEFAULTS", "StorageError", "init_damnit_dir", "read_fragment", "run_lock",
    "store_fragment",
]
