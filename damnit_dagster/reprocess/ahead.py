"""What a reprocess that the command does itself starts before it imports Dagster.

Such a command spends seconds importing Dagster, opening the instance and creating its
Dagster runs before a step could evaluate anything. So it starts first what it can from
what it knows without Dagster (the runs, the served context file's variables, the
folder's settings), and that works meanwhile on the other cores:

* :func:`evaluation_server`: for evaluations in this interpreter, the server that loads
  the user's side and forks the evaluations (:mod:`.execution.fork_server`);
* :func:`submitted_ahead`: for ``--slurm``, the job array itself, which the steps follow
  instead of submitting their own (:func:`damnit_dagster.defs.slurm_step.on_slurm`). The
  command owns it: leaving cancels what is still queued or running (Ctrl-C, a Dagster
  run that failed before following it).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from damnit_dagster.defs.context_source import evaluation_path, load_context
from damnit_dagster.defs.variables import LOCAL, bucket_of, trigger_for
from damnit_dagster.execution.environment import ContextPythonError
from damnit_dagster.execution.fork_server import EvaluationServer
from damnit_dagster.execution.process_run import same_interpreter
from damnit_dagster.execution.slurm import SlurmError
from damnit_dagster.execution.slurm_array import SlurmArray
from damnit_dagster.reprocess.selection import selection
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths


@contextlib.contextmanager
def evaluation_server(paths: DamnitPaths, wanted: bool) -> Iterator[EvaluationServer | None]:
    """The evaluation server of the folder when ``wanted`` and its ``context_python`` is
    this interpreter; otherwise None."""
    with DamnitDB(paths.db_file) as db:
        python = db.setting("context_python")
    if not wanted or not same_interpreter(python) or not paths.context_file.exists():
        yield None
        return
    with EvaluationServer(paths.root, paths.context_file) as server:
        yield server


@contextlib.contextmanager
def submitted_ahead(damnit_dir, runs: list[int], match=(), variables=(), data: str = "all",
                    wanted: bool = True) -> Iterator[SlurmArray | None]:
    """When ``wanted``, the submitted array evaluating the selected non-cluster variables
    of ``runs`` (as the steps of :func:`.direct.reprocess_direct` would ask for them),
    cancelled on leaving if not done; None when not wanted, when there is nothing to
    submit or when Slurm refused it (the step then submits its own and reports why)."""
    if not wanted:
        yield None
        return
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
