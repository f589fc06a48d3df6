"""Evaluations with the folder's ``context_python``: ``python -m context_loader exec`` in
that interpreter, under the folder's limits, in a process group of its own (killed when it
ends), its output appended to the run's process log and copied to the caller's."""
from __future__ import annotations

import collections
import subprocess
import threading
from pathlib import Path

from damnit_dagster.execution import environment
from damnit_dagster.execution.evaluator import Ended, Evaluation, Request, evaluate
from damnit_dagster.execution.limits import Limits, cores_for, process_end, wait_for_group
from damnit_dagster.execution.process_log import header

#: What an allocation refused by RLIMIT_DATA looks like in a traceback: Python's error, a
#: shared library that cannot be mapped, errno ENOMEM, C++'s exception, OpenBLAS.
_OUT_OF_MEMORY = ("MemoryError", "failed to map segment", "Cannot allocate memory",
                  "std::bad_alloc", "Memory allocation still failed")


class SubprocessEvaluator:
    """The runner in ``settings['context_python']`` (default: this interpreter)."""

    def __init__(self, settings: dict):
        self.limits = Limits.from_settings(settings)
        self.python = environment.resolve_python(settings.get("context_python"))
        environment.check_python(self.python)

    def header(self, request: Request) -> str:
        limits = self.limits
        which = "non-cluster " if request.cluster is False else ""
        return (f"{header(request.proposal, request.run)}\n{which}variables, "
                f"data={request.data}, limits: {limits.cpus} CPU cores, {limits.mem_text} "
                f"memory, {limits.time_text}; python: {self.python}")

    def fragment_for(self, request) -> None:
        return None

    def run(self, request: Request, *, fragment: Path, report: Path, log: Path,
            echo) -> Ended:
        cmd = environment.runner_command(
            self.python, request.context_file, request.proposal, request.run, request.data,
            fragment=fragment, report=report, variables=request.variables,
            match=request.match, cluster=request.cluster, inputs_from=request.inputs_from)
        with cores_for(self.limits) as cores:
            returncode, timed_out, output = _run_teed(
                self.limits.wrap(cmd, cores), cwd=request.damnit_dir, log=log, echo=echo,
                timeout=self.limits.time)
        if returncode == 0 and not timed_out:
            return Ended(ok=True)
        hint = ""
        if returncode > 0 and any(marker in output for marker in _OUT_OF_MEMORY):
            hint = (f" (out of memory: the limit for non-cluster variables is "
                    f"{self.limits.mem_text}, noncluster_mem)")
        stopped = (self.limits.timed_out() if timed_out
                   else process_end(request.run, returncode, self.limits))
        return Ended(ok=False, stopped=stopped, timed_out=timed_out, hint=hint)


def evaluate_local(damnit_dir, proposal: int, run: int, data: str = "all", *,
                   variables=(), match=(), cluster: bool | None = False,
                   settings: dict | None = None, context_path=None, echo=True) -> Evaluation:
    """Evaluate the variables selected by ``data``/``variables``/``match``/``cluster``
    (default: the non-cluster ones) for one run with ``settings['context_python']``,
    under the folder's limits: see :func:`.evaluator.evaluate`. Raises
    ``ContextPythonError`` for an unusable ``context_python``."""
    settings = settings or {}
    request = Request(Path(damnit_dir), int(proposal), int(run), data, tuple(variables),
                      tuple(match), cluster, settings, context_path)
    return evaluate(SubprocessEvaluator(settings), request, echo=echo)


def _run_teed(cmd, *, cwd, log: Path, echo, timeout) -> tuple[int, bool, str]:
    """Run ``cmd`` in its own process group (killed when it ends, or after ``timeout``
    seconds) with its stdout+stderr appended to ``log`` and copied to ``echo``; return
    its exit code, whether it timed out, and the last lines it printed."""
    env = environment.runner_env()
    last = collections.deque(maxlen=30)
    with open(log, "ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

        def pump():
            for line in proc.stdout:
                last.append(line)
                log_file.write(line)
                log_file.flush()
                if echo is not None:
                    echo.write(line.decode("utf-8", "replace"))
                    echo.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            timed_out = wait_for_group(proc.pid, timeout)
        finally:   # also when the Dagster step is interrupted
            returncode = proc.wait()
            reader.join(timeout=10)
    return returncode, timed_out, b"".join(last).decode("utf-8", "replace")
