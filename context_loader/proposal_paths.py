"""Where a proposal's data is, found as EXtra-data finds it (``*/*/pNNNNNN`` under
``$EXTRA_DATA_DATA_ROOT``, default ``/gpfs/exfel/exp``) without importing EXtra-data:
its package brings xarray and pandas with it, which a process that only needs the path
(a ``reprocess`` command checking which runs have data) would then carry."""
from __future__ import annotations

import os
from pathlib import Path

#: EXtra-data's default data root.
DEFAULT_DATA_ROOT = "/gpfs/exfel/exp"


def data_root() -> Path:
    """The root EXtra-data searches for proposals."""
    return Path(os.environ.get("EXTRA_DATA_DATA_ROOT", DEFAULT_DATA_ROOT))


def find_proposal_dir(proposal: int) -> Path:
    """The proposal's data folder (with ``raw/``, ``proc/`` and ``usr/``); raises
    ``LookupError`` naming the root when there is none."""
    name = f"p{int(proposal):06d}"
    for path in data_root().glob(f"*/*/{name}"):
        return path
    raise LookupError(f"Couldn't find proposal dir for {name!r} under {data_root()}")


def proc_available(proposal: int, run: int) -> bool:
    """Whether calibrated (proc) files of the run exist, without opening them."""
    try:
        run_dir = find_proposal_dir(proposal) / "proc" / f"r{run:04d}"
    except LookupError:
        return False
    return run_dir.is_dir() and any(run_dir.glob("*.h5"))
