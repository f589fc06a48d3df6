"""Which Python evaluates the context file, and the runner command it runs.

``damnit-dagster db-config context_python /path/to/python`` makes that interpreter run
``python -m context_loader exec ...`` (the runner); empty means our own interpreter. The
interpreter needs the modules in :data:`REQUIRED_MODULES`; our ``context_loader`` reaches
it through ``PYTHONPATH`` (the project root), so nothing of ours has to be installed there.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The project root: holds ``context_loader/`` and ``damnit_ctx.py``.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Modules the context Python must have (import name -> package to install). The spec
#: lists extra_data, pyyaml and requests; the runner itself needs the rest.
REQUIRED_MODULES = {
    "extra_data": "extra_data",
    "numpy": "numpy",
    "xarray": "xarray",
    "h5py": "h5py",
    "h5netcdf": "h5netcdf",
    "yaml": "pyyaml",
    "requests": "requests",
}

#: Environment variables not passed on to the runner (as DAMNIT's ``_filter_env``):
#: they would confuse a job started from inside another job, or a headless evaluation.
DROPPED_ENV = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "DISPLAY", "LD_PRELOAD")

_CHECK_TIMEOUT = 120.0


class ContextPythonError(RuntimeError):
    """The configured ``context_python`` cannot evaluate context files; the message
    names the interpreter and what it lacks."""


def resolve_python(context_python: str | None = None) -> str:
    """The interpreter to use: ``context_python`` (a path, or a name on ``PATH``) or,
    when empty, this process's own interpreter. Raises :class:`ContextPythonError` if it
    is not an executable file."""
    if not context_python:
        return sys.executable
    found = shutil.which(context_python) or context_python
    path = Path(found)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ContextPythonError(
            f"context_python {context_python!r} is not an executable file "
            "(set it with `damnit-dagster db-config context_python /path/to/python`)")
    return str(path.absolute())


def runner_env(base: dict | None = None) -> dict:
    """The environment of a runner: ``base`` (default ``os.environ``) without
    :data:`DROPPED_ENV`, with the project root first on ``PYTHONPATH``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in DROPPED_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


def runner_command(python: str, context_path, proposal: int, run: int, data: str, *,
                   fragment, report, variables=(), match=(), cluster=None,
                   inputs_from=None) -> list[str]:
    """``python -m context_loader exec CONTEXT --proposal P --run R --data D
    [--var V]... [--match M]... [--cluster|--no-cluster] [--inputs-from RUN.h5]
    --fragment F --report J``."""
    cmd = [str(python), "-m", "context_loader", "exec", str(context_path),
           "--proposal", str(int(proposal)), "--run", str(int(run)), "--data", str(data)]
    for name in variables:
        cmd += ["--var", name]
    for text in match:
        cmd += ["--match", text]
    if cluster is not None:
        cmd.append("--cluster" if cluster else "--no-cluster")
    if inputs_from is not None:
        cmd += ["--inputs-from", str(inputs_from)]
    cmd += ["--fragment", str(fragment), "--report", str(report)]
    return cmd


# Run inside the checked interpreter: which required modules it lacks, whether our
# runner imports there, and its version.
_PROBE = """
import importlib, importlib.util, json, sys, traceback
out = {"version": sys.version.split()[0],
       "missing": [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]}
if not out["missing"]:
    try:
        importlib.import_module("context_loader.runner")
    except BaseException:
        out["runner_error"] = traceback.format_exc(limit=3)
print(json.dumps(out))
"""


def check_python(python: str) -> None:
    """Make sure ``python`` can run our runner; raise :class:`ContextPythonError` naming
    the interpreter and the missing modules (and the ``pip install`` that fixes it).
    This very interpreter needs no check: it is installed with everything it needs."""
    if python == sys.executable:
        return
    path = Path(python)
    try:
        mtime = path.stat().st_mtime
    except OSError as e:
        raise ContextPythonError(f"context_python {python}: {e}") from None
    problem = _probe(str(path), mtime)
    if problem:
        raise ContextPythonError(problem)


@functools.lru_cache(maxsize=8)
def _probe(python: str, mtime: float) -> str | None:
    """The problem with ``python`` as text, or None (cached per interpreter file)."""
    try:
        proc = subprocess.run([python, "-c", _PROBE, *REQUIRED_MODULES], env=runner_env(),
                              capture_output=True, text=True, timeout=_CHECK_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"context_python {python} could not be run: {e}"
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr or proc.stdout).strip()[-1000:]
        return f"context_python {python} is not a usable Python (exit {proc.returncode}): {tail}"
    if out["missing"]:
        packages = " ".join(REQUIRED_MODULES[m] for m in out["missing"])
        return (f"context_python {python} (Python {out['version']}) lacks the module(s) "
                f"{', '.join(out['missing'])} needed to evaluate the context file; "
                f"install them with `{python} -m pip install {packages}`")
    if "runner_error" in out:
        return (f"context_python {python} (Python {out['version']}) cannot import the "
                f"damnit-dagster runner (context_loader):\n{out['runner_error']}")
    return None
