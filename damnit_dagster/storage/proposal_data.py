"""Where a proposal's data is: its folder under ``EXTRA_DATA_DATA_ROOT`` (default
``/gpfs/exfel/exp``, found as EXtra-data finds it: ``context_loader.proposal_paths``) and
the runs whose raw data is there."""
from __future__ import annotations

from pathlib import Path

from context_loader.proposal_paths import data_root, find_proposal_dir


class ProposalNotFound(LookupError):
    """The proposal's folder is not under the data root; the message says where we looked."""


def proposal_dir(proposal: int) -> Path:
    """The proposal's data folder (with ``raw/``, ``proc/`` and ``usr/``)."""
    try:
        return find_proposal_dir(proposal)
    except LookupError:
        raise ProposalNotFound(f"proposal {proposal} not found under {data_root()}") from None


def runs_with_raw_data(proposal: int) -> set[int]:
    """Run numbers with a ``raw/rNNNN`` folder in the proposal (as DAMNIT's reprocess checks)."""
    raw = proposal_dir(proposal) / "raw"
    return {int(p.name[1:]) for p in raw.glob("r[0-9]*") if p.name[1:].isdigit()}
