"""Creating a DAMNIT folder: its directories, a blank ``runs.sqlite`` and ``context.py``."""
from __future__ import annotations

from pathlib import Path

from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths, share


def init_damnit_dir(root, proposal: int, context_source=None, **settings) -> DamnitPaths:
    """Set up a DAMNIT folder for ``proposal``: directories, ``runs.sqlite`` (created if
    missing, keeping an existing one as it is) and ``context.py`` (copied from
    ``context_source`` if given and none exists, else an empty file).

    Extra keyword arguments are stored as settings (``metameta``) of a new database.
    """
    paths = DamnitPaths(root)
    paths.make_dirs()
    if not paths.db_file.exists():
        DamnitDB.create(paths.root, proposal, **settings).close()
    if not paths.context_file.exists():
        text = Path(context_source).read_text() if context_source is not None else ""
        paths.context_file.write_text(text)
        share(paths.context_file)
    return paths
