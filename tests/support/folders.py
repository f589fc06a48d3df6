"""A new DAMNIT folder with a given context file and settings, as ``damnit-dagster init``
and ``damnit-dagster db-config`` would leave it (tests/conftest.py makes it the
``damnit_folder`` fixture)."""
from __future__ import annotations

import textwrap
from pathlib import Path

from damnit_dagster.storage.folder import init_damnit_dir
from damnit_dagster.storage.layout import DamnitPaths

#: The mock proposal of the ``mock_proposal`` fixture.
PROPOSAL = 1234


def make_damnit_folder(root, context: str | Path | None = None, *, proposal: int = PROPOSAL,
                       **settings) -> DamnitPaths:
    """Make the DAMNIT folder ``root`` for ``proposal``: its directories, ``runs.sqlite``
    with ``settings`` as its db-config (e.g. ``slurm_time="0:04"``), and ``context.py``:
    a copy of the file ``context`` if it is a :class:`~pathlib.Path`, the (dedented) text
    ``context`` if it is a string, else empty."""
    root = Path(root)
    if isinstance(context, Path):
        return init_damnit_dir(root, proposal, context_source=context, **settings)
    paths = init_damnit_dir(root, proposal, **settings)
    if context is not None:
        paths.context_file.write_text(textwrap.dedent(context))
    return paths
