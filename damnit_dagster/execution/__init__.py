"""Where variables run: locally under the folder's limits, or in a Slurm job.

No Dagster here: the assets call :func:`evaluate_local` (non-cluster variables) or
:func:`evaluate_in_slurm` (``cluster=True`` ones), then store the returned fragment with
``damnit_dagster.storage.writer.store_fragment``. Both run the same runner (``python -m
context_loader exec``) with the folder's ``context_python`` and append to
``process_logs/r{R}-p{P}.out``.
"""
from damnit_dagster.execution.environment import (
                          ContextPythonError,
                          check_python,
                          resolve_python,
                          runner_command,
                          runner_env,
)
from damnit_dagster.execution.limits import Evaluation, ExecutionError, Limits, evaluate_local
from damnit_dagster.execution.process_log import log_path
from damnit_dagster.execution.slurm import (
                          JobEnd,
                          JobFailed,
                          SlurmError,
                          SlurmJob,
                          SlurmSettings,
                          cancel,
                          evaluate_in_slurm,
                          submit,
                          wait,
)

__all__ = [
    "ContextPythonError", "Evaluation", "ExecutionError", "JobEnd", "JobFailed", "Limits",
    "SlurmError", "SlurmJob", "SlurmSettings", "cancel", "check_python", "evaluate_in_slurm",
    "evaluate_local", "log_path", "resolve_python", "runner_command", "runner_env", "submit",
    "wait",
]
