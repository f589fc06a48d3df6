"""Jobs: which variables a trigger computes, selected by the assets' tags.

``raw`` (migration), ``proc`` (calibration) and ``all`` (reprocessing) select the
non-cluster variables with that ``data`` tag; ``raw_cluster``, ``proc_cluster`` and
``all_cluster`` the ``cluster=True`` ones (DAMNIT's follow-up Slurm job), and exist only
when the context file has cluster variables. Checks are left out of the selection: the
``evaluation`` check results are reported by the variables' step itself, only for
variables that failed or were skipped.
"""
from __future__ import annotations

import dagster as dg

from damnit_dagster.defs import tags

TRIGGERS = ("raw", "proc", "all")


def job_name(trigger: str, cluster: bool = False) -> str:
    """``raw``, ``proc``, ``all`` or ``raw_cluster``...: the job of a trigger."""
    return f"{trigger}_cluster" if cluster else trigger


def selection(proposal: int, trigger: str, cluster: bool = False) -> dg.AssetSelection:
    """The variables a trigger computes: by ``data`` tag (all for ``all``) and placement."""
    sel = dg.AssetSelection.tag("cluster", "true" if cluster else "false")
    if trigger != "all":
        sel = sel & dg.AssetSelection.tag("data", trigger)
    return (sel & dg.AssetSelection.groups(tags.group_name(proposal))).without_checks()


def build_jobs(proposal: int, has_cluster: bool) -> list:
    """The jobs of a proposal's code location."""
    return [dg.define_asset_job(job_name(t, c), selection=selection(proposal, t, c),
                                description=f"Compute the {t} {'cluster' if c else 'local'} "
                                            f"variables of proposal {proposal} for a run.",
                                tags={tags.TRIGGER: t})
            for c in ((False, True) if has_cluster else (False,)) for t in TRIGGERS]
