"""The job array of a ``reprocess --slurm`` that the command does itself, submitted
before Dagster has started.

Such a command spends seconds importing Dagster, opening the instance and creating its
Dagster runs before a step could submit the array. So it submits the array first, from
what it knows without Dagster (the runs, the served context file's variables, the
folder's settings), and its steps follow that array instead of submitting their own
(:func:`damnit_dagster.defs.slurm_step.on_slurm`): the tasks start while Dagster does.
The command owns the array: leaving :func:`submitted_ahead` cancels what is still
queued or running (Ctrl-C, a Dagster run that failed before following it).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from damnit_dagster.defs.context_source import evaluation_path, load_context
from damnit_dagster.defs.variables import LOCAL, bucket_of, trigger_for
from damnit_dagster.execution.environment import ContextPythonError
from damnit_dagster.execution.slurm import SlurmError
from damnit_dagster.execution.slurm_array import SlurmArray
from damnit_dagster.reprocess.selection import selection
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths


@contextlib.contextmanager
def submitted_ahead(damnit_dir, runs: list[int], match=(), variables=(),
                    data: str = "all") -> Iterator[SlurmArray | None]:
    """The submitted array evaluating the selected non-cluster variables of ``runs``
    (as the steps of :func:`.direct.reprocess_direct` would ask for them), cancelled on
    leaving if not done; None when there is nothing to submit or Slurm refused it (the
    step then submits its own and reports why)."""
    paths = DamnitPaths(damnit_dir)
    try:
        chosen = selection(paths, runs, match, variables, data)
        path = evaluation_path(load_context(paths.root))
    except (ValueError, RuntimeError):   # the command reports it
        yield None
        return
    by_name = {v["name"]: v for v in chosen.variables}
    local = [n for n in chosen.names if bucket_of(by_name[n]) == LOCAL]
    if not local:
        yield None
        return
    with DamnitDB(paths.db_file) as db:
        settings = db.metameta.to_dict()
    array = SlurmArray(paths.root, chosen.proposal, chosen.runs, path, variables=local,
                       data=trigger_for([by_name[n] for n in local]), settings=settings)
    try:
        array.submit()
    except (SlurmError, ContextPythonError):
        yield None
        return
    with array:
        yield array
