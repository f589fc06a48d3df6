"""Warm children that evaluate runs one after another, for a step that recomputes from
stored inputs (``reprocess --stale``, the proc pass of a calibration event).

Such an evaluation is cheap (often one variable, its inputs read from the run's file), so
a child forked for each run (:mod:`.forked`) would cost more than the evaluation: the
fork, and every page of the warm process that the child writes to again. A
:class:`WorkerPool` gives each thread of the step one child forked from the warm process
(this one, or a command's evaluation server), which evaluates that thread's runs in turn,
as a task of a Slurm job array evaluates its runs with one load of the context file.

Each run keeps its own fragment, report and process log output, and the folder's limits:
the child is pinned to ``noncluster_cpus`` cores and may allocate ``noncluster_mem`` on
top of what it inherited; a run that reaches ``slurm_time`` kills the child. A child that
dies fails its run only, and the next run gets a new child. A child leads its own process
group, killed when the pool closes (what the user's code started lives that long), and is
replaced after :data:`RUNS_PER_CHILD` runs, or when the context file or the settings change.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import sys
import threading
import uuid

from damnit_dagster.execution.forked import (
    become_evaluator,
    execute_run,
    load_for_evaluation,
    output_to,
    ran,
)
from damnit_dagster.execution.limits import Limits, cores_for, kill_group

#: Runs a child evaluates before it is replaced, so that what the user's code keeps
#: between runs stays bounded.
RUNS_PER_CHILD = 50

#: The arguments of one run, as :func:`.forked.evaluate_in_child` takes them.
_RUN_FIELDS = ("proposal", "run", "data", "variables", "fragment", "inputs_from")


class WorkerPool:
    """One warm child per calling thread (use as a context manager: closing ends them).
    With ``server`` given to :meth:`evaluate`, the children are the server's."""

    def __init__(self):
        self._prefix = uuid.uuid4().hex
        self._children: dict[str, _Child] = {}
        self._servers: dict[int, object] = {}
        self._lock = threading.Lock()

    def evaluate(self, *, server=None, key: str | None = None, damnit_dir, context_path,
                 settings: dict, log, **run) -> dict:
        """Evaluate one run (the arguments of :func:`.forked.evaluate_in_child`) in the
        child of ``key`` (default: the calling thread's), started or replaced as needed;
        how it ended, as that function returns it."""
        key = f"{self._prefix}-{key or threading.get_ident()}"
        if server is not None:
            with self._lock:
                self._servers[id(server)] = server
            return server.evaluate(damnit_dir=damnit_dir, context_path=context_path,
                                   settings=settings, log=log, worker=key, **run)
        ctx = load_for_evaluation(context_path, damnit_dir)
        identity = (ctx, str(damnit_dir), json.dumps(settings, sort_keys=True, default=str))
        with self._lock:
            child = self._children.pop(key, None)
        if child is not None and (child.identity != identity or child.runs >= RUNS_PER_CHILD):
            child.close()
            child = None
        if child is None:
            child = _Child(identity, ctx, Limits.from_settings(settings), damnit_dir, log)
        with self._lock:
            self._children[key] = child
            child.busy = True
        try:
            return child.evaluate({"log": str(log), **run})
        except BaseException:   # interrupted: the run's child ends with it
            child.close()
            raise
        finally:
            with self._lock:
                child.busy = False
                if not child.alive and self._children.get(key) is child:
                    del self._children[key]

    def close(self, prefix: str = "") -> None:
        """End the children whose key starts with ``prefix`` (by default all of them, and
        those of the servers this pool asked); one evaluating a run is killed."""
        start = f"{self._prefix}-{prefix}"
        with self._lock:
            popped = [self._children.pop(k) for k in list(self._children)
                      if k.startswith(start)]
            children = [(child, child.busy) for child in popped]
            servers = [] if prefix else list(self._servers.values())
        for child, busy in children:
            if busy:
                kill_group(child.pid)   # its thread sees it end, and reaps it
            else:
                child.close()
        for server in servers:
            server.release(self._prefix)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Child:
    """One warm child and the pipes to it. It is forked by a thread of its own, alive as
    long as the child, since the child dies with the thread that forked it."""

    def __init__(self, identity: tuple, ctx, limits: Limits, damnit_dir, log):
        self.identity, self.limits, self.runs = identity, limits, 0
        self.alive, self.busy = True, False
        self._stack = contextlib.ExitStack()
        cores = self._stack.enter_context(cores_for(limits))
        self._forked, self._ended = threading.Event(), threading.Event()
        self._buffer = b""
        keeper = threading.Thread(target=self._fork_and_keep, name="evaluation-child",
                                  args=(ctx, cores, damnit_dir, log), daemon=True)
        keeper.start()
        self._forked.wait()

    def _fork_and_keep(self, ctx, cores, damnit_dir, log) -> None:
        requests_in, self._requests = os.pipe()
        self._answers, answers_out = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(self._requests)
            os.close(self._answers)
            _serve_runs(ctx, self.limits, cores, damnit_dir, log, requests_in, answers_out)
        os.close(requests_in)
        os.close(answers_out)
        try:
            os.setpgid(pid, pid)   # the child does it too; whichever comes first
        except OSError:
            pass
        self.pid = pid
        self._forked.set()
        self._ended.wait()

    def evaluate(self, request: dict) -> dict:
        """Send one run; wait for its answer within the time limit."""
        self.runs += 1
        try:
            os.write(self._requests, (json.dumps(request) + "\n").encode())
        except OSError:   # the child is gone
            return self._end(timed_out=False)
        line, timed_out = self._answer(self.limits.time)
        if line is None:
            return self._end(timed_out=timed_out)
        return {"exit": json.loads(line)["exit"], "timed_out": False}

    def _answer(self, timeout: float) -> tuple[bytes | None, bool]:
        """(the child's next answer line, or None when it died or the time is up; whether
        the time is up)."""
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], timeout)
            if not ready:
                return None, True
            data = os.read(self._answers, 4096)
            if not data:
                return None, False
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line, False

    def _end(self, timed_out: bool) -> dict:
        """Kill the child and its group, reap it; how it ended."""
        kill_group(self.pid)
        _, status = os.waitpid(self.pid, 0)
        self._release()
        return {"exit": os.waitstatus_to_exitcode(status), "timed_out": timed_out}

    def close(self) -> None:
        """End the child and whatever it started."""
        if self.alive:
            self._end(timed_out=False)

    def _release(self) -> None:
        if self.alive:
            self.alive = False
            for fd in (self._requests, self._answers):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._stack.close()
            self._ended.set()


def _serve_runs(ctx, limits: Limits, cores: list[int], damnit_dir, log, requests_fd: int,
                answers_fd: int) -> None:
    """The child's loop: evaluate each run it is sent, answer ``{"exit": 0|1}`` (1: the
    runner raised, as a forked child's exit status), until the pipe closes."""
    def serve():
        become_evaluator(limits, cores, damnit_dir, log)
        with os.fdopen(requests_fd, "r", encoding="utf-8") as requests:
            for line in requests:
                request = json.loads(line)
                output_to(request["log"])
                ok = ran(functools.partial(execute_run, ctx,
                                           **{k: request.get(k) for k in _RUN_FIELDS}))
                os.write(answers_fd, (json.dumps({"exit": 0 if ok else 1}) + "\n").encode())
    os._exit(0 if ran(serve) else 1)
