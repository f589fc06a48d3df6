"""The Dagster resource steps use to reach a DAMNIT folder."""
from __future__ import annotations

import dagster as dg

from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths


class DamnitFolder(dg.ConfigurableResource):
    """A DAMNIT folder (``context.py``, ``runs.sqlite``, ``extracted_data/``...).

    ``path`` is the folder; its settings (``context_python``...) are read from
    ``runs.sqlite`` when a step needs them, so ``db-config`` changes apply to the next run.
    """

    path: str

    @property
    def paths(self) -> DamnitPaths:
        return DamnitPaths(self.path)

    def setting(self, key: str):
        """A setting from the folder's ``metameta`` (or DAMNIT's default)."""
        with DamnitDB(self.paths.db_file) as db:
            return db.setting(key)

    def settings(self) -> dict:
        """All settings of the folder (``metameta``), for limits and Slurm options."""
        with DamnitDB(self.paths.db_file) as db:
            return db.metameta.to_dict()

    def context_python(self) -> str | None:
        """The interpreter for the user's code, or None to use this process."""
        return self.setting("context_python") or None
