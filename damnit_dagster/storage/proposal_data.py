"""Where a proposal's data is: its folder under ``EXTRA_DATA_DATA_ROOT`` (default
``/gpfs/exfel/exp``, found by EXtra-data) and the runs whose raw data is there."""
from __future__ import annotations

import os
from pathlib import Path


class ProposalNotFound(LookupError):
    """The proposal's folder is not under the data root; the message says where we looked."""


def proposal_dir(proposal: int) -> Path:
    """The proposal's data folder (with ``raw/``, ``proc/`` and ``usr/``)."""
    from extra_data.read_machinery import find_proposal

    try:
        return Path(find_proposal(f"p{int(proposal):06d}"))
    except Exception as e:
        root = os.environ.get("EXTRA_DATA_DATA_ROOT", "/gpfs/exfel/exp")
        raise ProposalNotFound(f"proposal {proposal} not found under {root}: {e}") from None


def runs_with_raw_data(proposal: int) -> set[int]:
    """Run numbers with a ``raw/rNNNN`` folder in the proposal (as DAMNIT's reprocess checks)."""
    raw = proposal_dir(proposal) / "raw"
    return {int(p.name[1:]) for p in raw.glob("r[0-9]*") if p.name[1:].isdigit()}
