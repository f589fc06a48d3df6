"""A live run's evaluation started when its event arrives, taken over by the run's step.

Between a new-data event and the first line of the Dagster step that processes it, Dagster
creates the run, queues, launches and starts it: a few tenths of a second in which the
run's variables could already be computed. So when the event sensor requests a
single-run migration run it also sends the evaluation's request (:func:`request`) to the
backend's warm process (the run workers' zygote, :mod:`damnit_dagster.plugins.launcher`),
which forks it at once (:class:`Server`) exactly as the step would: a child of the same
warm process, under the folder's limits, into a fragment of ``extracted_data/``. The step,
when it starts, takes that evaluation over (:func:`take_over`) if it asked for the very
same thing (folder, run, variables, trigger, context file's content and neighbours,
settings: :func:`key`), waits for it to end, and stores its fragment as its own: still one
store per run, by the step (single writer). Otherwise (nothing was started, the context
or settings changed in between, the head start died) the step evaluates as usual; a head
start nobody takes over is removed like any dead evaluation's files
(:mod:`damnit_dagster.storage.leftovers`: they are named after the process that ran it).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import time
from pathlib import Path

from damnit_dagster.execution.evaluator import Ended, Request, report_path
from damnit_dagster.execution.forked import ForkedEvaluator, neighbours_stamp
from damnit_dagster.plugins.processes import exit_with, process_start_time
from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.leftovers import new_fragment

#: Suffix, after the fragment's name, of the marker naming what a head start evaluates.
MARKER = ".head-"
#: ``struct ucred`` (pid, uid, gid) of a request's sender.
_CREDS = struct.Struct("3i")
#: Head starts running at once, at most (the run queue's slots for local runs): more
#: requests are dropped, and their steps evaluate as usual.
MAX_RUNNING = 2
#: How often the step looks whether the head start it took over has ended.
POLL_SECONDS = 0.005


def address(wake: str | None = None) -> str | None:
    """Where the warm process of this backend takes head starts (abstract Unix socket), or
    None outside a backend; next to the inbox's doorbell at ``wake`` (default:
    ``$DAMNIT_WAKE_ADDRESS``, which a backend's processes have)."""
    wake = wake or os.environ.get("DAMNIT_WAKE_ADDRESS")
    return f"{wake}-head-start" if wake else None


def key(damnit_dir, proposal: int, run: int, context_path, variables, data: str,
        settings: dict) -> str:
    """What an evaluation computes, as a short digest: equal only for the same folder,
    run, variables, trigger, settings and context file (content and neighbour modules)."""
    from damnit_dagster.execution.describe import file_sha

    damnit_dir, context_path = Path(damnit_dir).resolve(), Path(context_path).resolve()
    what = [str(damnit_dir), int(proposal), int(run), str(context_path), sorted(variables),
            data, settings, file_sha(context_path),
            neighbours_stamp(context_path.parent, damnit_dir)]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def request(*, damnit_dir, proposal: int, run: int, context_path, variables, data: str,
            settings: dict) -> bool:
    """Ask this backend's warm process to start evaluating now; False when nothing
    listens (no backend, or its warm process is not up). Never blocks."""
    where = address()
    if where is None:
        return False
    message = {"damnit_dir": str(Path(damnit_dir).resolve()), "proposal": int(proposal),
               "run": int(run), "context_path": str(Path(context_path).resolve()),
               "variables": list(variables), "data": data, "settings": settings,
               "key": key(damnit_dir, proposal, run, context_path, variables, data, settings)}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(json.dumps(message).encode(), "\0" + where)
        return True
    except OSError:
        return False


class Server:
    """In the warm process: takes head-start requests on :func:`address` and forks each."""

    def __init__(self, where: str, damnit_dir, close_in_child=()):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind("\0" + where)
        self._damnit_dir = str(Path(damnit_dir).resolve())
        self._close_in_child = tuple(close_in_child)
        self._running: list[tuple[int, str]] = []

    def fileno(self) -> int:
        return self._sock.fileno()

    def handle(self) -> None:
        """Read one request and fork its evaluation (the caller reaps nothing: the warm
        process ignores SIGCHLD). An abstract socket has no permissions: requests from
        another user, or for another folder than this backend's, are ignored."""
        try:
            data, ancillary, _, _ = self._sock.recvmsg(1 << 20, socket.CMSG_SPACE(_CREDS.size))
            message = json.loads(data)
        except (OSError, ValueError):
            return
        senders = [_CREDS.unpack(d[:_CREDS.size])[1] for level, kind, d in ancillary
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
        if senders != [os.getuid()] or message.get("damnit_dir") != self._damnit_dir:
            return
        self._running = [p for p in self._running if process_start_time(p[0]) == p[1]]
        if len(self._running) >= MAX_RUNNING:
            return
        pid = os.fork()
        if pid:
            if start := process_start_time(pid):   # None: already over
                self._running.append((pid, start))
            return

        def evaluate() -> None:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (self._sock.fileno(), *self._close_in_child):
                os.close(fd)
            _evaluate(message)

        exit_with(evaluate)


def serve(close_in_child=()) -> Server | None:
    """The warm process's head-start server, or None when not in a backend or another
    process already serves this backend's address."""
    where, damnit_dir = address(), os.environ.get("DAMNIT_DIR")
    if where is None or not damnit_dir:
        return None
    try:
        return Server(where, damnit_dir, close_in_child)
    except OSError:
        return None


def _evaluate(message: dict) -> None:
    """In the forked child: evaluate into a fragment owned by this process, announce it
    with a marker (``<fragment>.head-<key>``), and write how it ended to the marker's
    ``.done`` file."""
    from damnit_dagster.execution.forked import evaluate_in_child

    paths = DamnitPaths(message["damnit_dir"])
    fragment = new_fragment(paths, message["proposal"], message["run"])
    marker = Path(f"{fragment}{MARKER}{message['key']}")
    marker.write_text(json.dumps({"pid": os.getpid(),
                                  "start": process_start_time(os.getpid())}))
    t0 = time.monotonic()
    end = evaluate_in_child(damnit_dir=message["damnit_dir"],
                            context_path=message["context_path"],
                            proposal=message["proposal"], run=message["run"],
                            data=message["data"], variables=message["variables"],
                            fragment=str(fragment), log=str(_log_of(fragment)),
                            settings=message["settings"])
    done = Path(f"{marker}.done")
    tmp = done.with_name(done.name + ".tmp")
    tmp.write_text(json.dumps({**end, "duration": time.monotonic() - t0}))
    os.replace(tmp, done)


def _log_of(fragment: Path) -> Path:
    return Path(f"{fragment}.log")


def _files_of(fragment: Path) -> list[Path]:
    """What an evaluation into ``fragment`` may have written, besides its log."""
    from context_loader.progress import partial_path, progress_path

    report = report_path(fragment)
    return [fragment, partial_path(fragment), report, progress_path(report)]


def take_over(request: Request, evaluator: ForkedEvaluator) -> HeadStartEvaluator | None:
    """The evaluator of the head start of ``request``, claimed by this process (no other
    can take it), or None when there is none."""
    paths = DamnitPaths(request.damnit_dir)
    digest = key(request.damnit_dir, request.proposal, request.run, request.context_file,
                 request.variables, request.data, request.settings)
    prefix = f"p{request.proposal}_r{request.run}."
    suffix = f"{MARKER}{digest}"
    try:
        entries = [e.name for e in os.scandir(paths.extracted_dir)
                   if e.name.startswith(prefix) and e.name.endswith(suffix)]
    except FileNotFoundError:
        return None
    for name in entries:
        marker = paths.extracted_dir / name
        claimed = marker.with_name(f"{name}.taken.{os.getpid()}")
        try:
            os.rename(marker, claimed)      # atomic: one taker
            owner = json.loads(claimed.read_text())
            owner = (owner["pid"], owner["start"])
        except (OSError, ValueError, KeyError):
            continue
        return HeadStartEvaluator(evaluator, paths.extracted_dir / name[:-len(suffix)],
                                  digest, claimed, owner)
    return None


class HeadStartEvaluator(ForkedEvaluator):
    """A head start taken over: waits for it, then hands its fragment and report over as
    if this step had evaluated them; evaluates as usual when it died without ending."""

    def __init__(self, evaluator: ForkedEvaluator, fragment: Path, digest: str, claimed: Path,
                 owner: tuple[int, str]):
        super().__init__(evaluator.settings, evaluator.server)
        self.head_fragment, self.claimed, self.owner = fragment, claimed, owner
        self.done = Path(f"{fragment}{MARKER}{digest}.done")

    def header(self, request: Request) -> str:
        return super().header(request) + ", started when the event arrived"

    def run(self, request: Request, *, fragment: Path, report: Path, log: Path,
            echo) -> Ended:
        head_log = _log_of(self.head_fragment)
        try:
            end = self._wait()
        except BaseException:   # the step is cancelled: so is what it took over
            if process_start_time(self.owner[0]) == self.owner[1]:
                os.kill(self.owner[0], signal.SIGKILL)   # its child dies with it
            raise
        try:
            if end is None:   # it died: evaluate here instead
                return super().run(request, fragment=fragment, report=report, log=log,
                                   echo=echo)
            for old, new in zip(_files_of(self.head_fragment), _files_of(fragment)):
                if old.exists():
                    os.replace(old, new)
            output = head_log.read_text(encoding="utf-8", errors="replace")
            with open(log, "a", encoding="utf-8") as f:
                f.write(output)
            return self.ended(request, end, output, echo, duration=end.get("duration"))
        finally:
            for path in (head_log, self.claimed, self.done, *_files_of(self.head_fragment)):
                path.unlink(missing_ok=True)

    def _wait(self) -> dict | None:
        """How the head start ended, once it has; None if its process is gone without
        saying (killed)."""
        while True:
            gone = process_start_time(self.owner[0]) != self.owner[1]
            try:
                return json.loads(self.done.read_text())
            except (OSError, ValueError):
                if gone:
                    return None
            time.sleep(POLL_SECONDS)
