"""A warm process of the user's side that describes the context file and forks evaluations.

A ``reprocess`` with no backend starts two slow things: Dagster (imports, the instance,
the run) and the user's side (the scientific stack the context file imports, the file
itself, the renderer's warm-up). In one process they happen one after the other, seconds
before the first run is evaluated. The command therefore forks an
:class:`EvaluationServer` first, before it imports Dagster: on the other core, the server
loads the user's side, describes the context file for the command, and then forks one
child per run, exactly as a step forks from its own warm process
(:func:`damnit_dagster.execution.forked.evaluate_in_child`).

The protocol is JSON lines over a socket pair: ``{"id", "describe": path}`` answered with
``{"id", "result"}`` (:func:`damnit_dagster.execution.describe.describe_file`'s), and
``{"id", "evaluate": {...}}`` answered with ``{"id", "exit": code, "timed_out": bool}``
once the child has ended (or ``{"id", "error"}`` if it could not be forked). Each child
leads its own process group, killed when it ends. An evaluation naming a ``worker`` goes
to that worker's warm child instead (:mod:`.fork_worker`); ``{"id", "release": prefix}``
ends the children of the workers named so (answered ``{"id"}``). The server exits when
the command closes its end (or dies); the evaluations still running then are killed with
their process groups, since nobody would store their results.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import traceback
from pathlib import Path


class EvaluationServer:
    """The command's side of a forked evaluation server for one DAMNIT folder."""

    def __init__(self, damnit_dir, context_path):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the server: never returns
            code = 1
            try:
                ours.close()
                code = _serve(theirs, Path(damnit_dir), Path(context_path))
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        self.pid = pid
        self._sock = ours
        self._writer = ours.makefile("w", encoding="utf-8")
        self._send_lock = threading.Lock()
        self._answers: dict[int, dict] = {}
        self._arrived = threading.Condition()
        self._next_id = 0
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="evaluation-server", daemon=True)
        self._reader.start()

    def describe(self, path, damnit_dir=None, context_python=None) -> dict:
        """:func:`~damnit_dagster.execution.describe.describe_file` of ``path``, in the server
        (same signature; the server is always this interpreter, so ``context_python`` is
        not used)."""
        return self._ask({"describe": str(path)})["result"]

    def evaluate(self, **request) -> dict:
        """Fork a child evaluating ``request`` (the arguments of
        :func:`~damnit_dagster.execution.forked.evaluate_in_child`, JSON-safe); how it ended (as
        that function returns it)."""
        answer = self._ask({"evaluate": request})
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return {"exit": answer["exit"], "timed_out": answer["timed_out"]}

    def release(self, prefix: str) -> None:
        """End the warm children of the workers whose names start with ``prefix``."""
        self._ask({"release": prefix})

    def _ask(self, request: dict) -> dict:
        with self._send_lock:
            ident = self._next_id = self._next_id + 1
            try:
                self._writer.write(json.dumps({"id": ident, **request}) + "\n")
                self._writer.flush()
            except OSError as e:
                raise RuntimeError(f"the evaluation server (pid {self.pid}) is gone: {e}") from None
        with self._arrived:
            self._arrived.wait_for(lambda: ident in self._answers or self._closed)
            answer = self._answers.pop(ident, None)
        if answer is None:
            raise RuntimeError(f"the evaluation server (pid {self.pid}) exited; see the "
                               "command's error output")
        return answer

    def _read(self):
        try:
            for line in self._sock.makefile("r", encoding="utf-8"):
                answer = json.loads(line)
                with self._arrived:
                    self._answers[answer["id"]] = answer
                    self._arrived.notify_all()
        except (OSError, ValueError):  # reset by a dying server, or its last line cut
            pass
        finally:
            with self._arrived:
                self._closed = True
                self._arrived.notify_all()

    def close(self) -> None:
        """Let the server finish its children and exit; wait for it."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        os.waitpid(self.pid, 0)
        self._reader.join()
        self._writer.close()
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(sock: socket.socket, damnit_dir: Path, context_path: Path) -> int:
    """The server's loop: answer each request line (evaluations in threads, so several
    children run at once); after the first description, load the context file for
    evaluations and warm up the renderer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a Ctrl-C is for the command and the runs
    from damnit_dagster.execution.describe import describe_file, file_sha
    from damnit_dagster.execution.fork_worker import WorkerPool
    from damnit_dagster.execution.forked import evaluate_in_child, load_for_evaluation
    from damnit_dagster.execution.limits import kill_group

    send_lock = threading.Lock()
    writer = sock.makefile("w", encoding="utf-8")

    def answer(message: dict) -> None:
        with send_lock:
            try:
                writer.write(json.dumps(message) + "\n")
                writer.flush()
            except OSError:   # the command is gone: nobody to answer
                pass

    running: set[int] = set()   # process groups of the children being evaluated
    running_lock = threading.Lock()

    def track(pid: int, alive: bool) -> None:
        with running_lock:
            (running.add if alive else running.discard)(pid)

    workers = WorkerPool()

    def evaluate(ident: int, request: dict) -> None:
        try:
            worker = request.pop("worker", None)
            answer({"id": ident, **(workers.evaluate(key=worker, **request) if worker
                                    else evaluate_in_child(**request, track=track))})
        except Exception as e:  # not even forked (the file cannot be loaded...): the run's error
            answer({"id": ident, "error": f"{type(e).__name__}: {e}"})

    described: dict[str, dict] = {}
    threads = []
    try:
        for line in sock.makefile("r", encoding="utf-8"):
            request = json.loads(line)
            if "describe" in request:
                path = request["describe"]
                key = f"{path}@{file_sha(Path(path))}"   # an edited file is described again
                if key not in described:
                    described[key] = describe_file(Path(path), damnit_dir)
                answer({"id": request["id"], "result": described[key]})
                if len(described) == 1:  # the command now sets up Dagster: get warm meanwhile
                    try:
                        load_for_evaluation(context_path, damnit_dir)
                    except Exception:  # each evaluation meets (and reports) the problem again
                        pass
            elif "release" in request:
                workers.close(request["release"])
                answer({"id": request["id"]})
            else:
                thread = threading.Thread(target=evaluate,
                                          args=(request["id"], request["evaluate"]))
                thread.start()
                threads.append(thread)
    except (OSError, ValueError):   # reset by a dying command, or its last line cut
        pass
    finally:   # the command is gone or done: nobody waits for these evaluations any more
        with running_lock:
            for pid in running:
                kill_group(pid)
        workers.close()
    for thread in threads:
        thread.join()
    return 0
