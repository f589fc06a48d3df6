"""Idle memory of N DAMNIT folders' backends served at once on one host, next to DAMNIT 0.4.0.

What runs, all on 127.0.0.1, with a temporary ``HOME`` and no ``DAGSTER_HOME`` (so each
folder gets its default instance under ``~/.local/state/damnit-dagster/<db_id>``):

* a Kafka broker: nafka (``tests/support/nafka_server.py``), the topics ``test.r2d2`` and
  ``cal.offline-corrections`` created first, as the facility's exist;
* **ours**: N mock proposals (2 runs each), ``damnit-dagster init P --context
  templates/context_25vars.py``, ``db-config kafka_brokers <nafka>`` (so each backend
  consumes Kafka, as DAMNIT's listener does), then ``damnit-dagster --dir F serve`` for all
  N at once: per folder a supervisord running ``listen``, which runs a code server (and its
  gRPC process), the webserver, the daemon and the daemon's warm run worker;
* **DAMNIT 0.4.0** (the ``damnit`` package of this venv), two ways, on its own folders
  (``damnit init DIR --proposal P``) for the same N proposals:

  - *central*: one listener for all N proposals, as the facility runs it
    (``damnit listener add P DIR`` in a listener folder, ``allow_local_processing 1``, then
    ``damnit listen DIR``);
  - *per folder*: what ``damnit listen --daemonize`` sets up in each folder, a supervisord
    running ``damnit listen .`` (its own ``supervisord.conf`` template, but with the
    control server on 127.0.0.1 instead of the host name).

  DAMNIT's brokers are hard-coded (``listener.KAFKA_CONF``): a small wrapper points them at
  the loopback broker, then calls ``damnit.cli.main(["listen", DIR])``.

Once every backend is ready, everything idles for ``--idle`` seconds; then the process trees
(ours: each folder's supervisord and its descendants; DAMNIT: the listener, or each
folder's supervisord) are sampled ``--samples`` times, a second apart, and the median is
shown: the sum of RSS (a page shared by forked processes counts once per process) and the
sum of PSS (counts it once in all: the right total for several backends; a page shared
with another tree, e.g. of libpython, is split between them, so each tree counts a little
less than it would alone). Also, over the idle time after its first third (at most 10 s,
left out as Kafka consumer groups settle then) plus the sampling: the CPU used, the bytes
written to storage (``write_bytes`` less ``cancelled_write_bytes``) and the growth of ``amore.log`` (DAMNIT:
``damnit.log``); the lines written to those logs after every backend was ready; every
process of one of our backends; a check that no process of any tree has a connection to
an address other than 127.0.0.1.

Everything started is stopped at the end, also on failure or SIGTERM (supervisorctl
shutdown, then any process left of the trees, the listener and nafka are killed by pid).

Usage: ``.venv/bin/python benchmarks/idle_backends.py [-n 2] [--idle 30] [--samples 5]
[--workdir DIR] [--keep]``: the markdown table goes to stdout, progress to stderr. The
work folder is a new temporary one (removed at the end unless ``--keep``); ``--workdir``
must not exist or be empty. About 1.5-2 min with the defaults.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _bench_util import load_note, tree_sample  # noqa: E402

BIN = Path(sys.executable).parent
CONTEXT = REPO / "damnit_dagster" / "templates" / "context_25vars.py"
NAFKA = REPO / "tests" / "support" / "nafka_server.py"
FIRST_PROPOSAL = 2001
TOPICS = ("test.r2d2", "cal.offline-corrections")
MiB = 2 ** 20

#: ``damnit listen DIR`` with DAMNIT's hard-coded brokers replaced by the loopback one.
DAMNIT_WRAPPER = '''\
"""damnit listen DIR (DAMNIT 0.4.0's CLI), its Kafka brokers pointed at $AMORE_BROKER."""
import os, sys
from damnit.backend import listener
for conf in listener.KAFKA_CONF.values():
    conf["brokers"] = [os.environ["AMORE_BROKER"]]
from damnit.cli import main
sys.exit(main(["listen", sys.argv[1]]))
'''

#: DAMNIT 0.4.0's damnit/backend/supervisord.conf as its write_supervisord_conf fills it,
#: except for the control server bound to 127.0.0.1 (DAMNIT uses the host name).
DAMNIT_SUPERVISORD_CONF = """\
[supervisord]
logfile = %(here)s/supervisord.log
pidfile = %(here)s/supervisord.pid

[inet_http_server]
port = 127.0.0.1:{port}
username = {user}
password = {password}

[program:damnit]
command = {command}
stopasgroup = true
directory = {directory}
stderr_logfile = NONE
stdout_logfile = NONE

[supervisorctl]
serverurl = http://127.0.0.1:{port}
username = {user}
password = {password}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"{what}: not within {timeout:g} s")


def run(cmd, *, env, cwd=None, logfile: Path, timeout: float = 120) -> str:
    """Run ``cmd`` (must succeed), its output appended to ``logfile``; returns the output."""
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    with open(logfile, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


# ---------------------------------------------------------------- what is started, and stopping it

class Started:
    """Every process and supervisord this benchmark started, to stop them all at the end."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.popens: list[subprocess.Popen] = []   # own process group each
        self.confs: list[Path] = []                # supervisord.conf of ours and DAMNIT's
        self.broker: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def popen(self, cmd, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([str(c) for c in cmd], start_new_session=True,
                                stdin=subprocess.DEVNULL, **kwargs)
        with self.lock:
            self.popens.append(proc)
        return proc

    def conf(self, path: Path) -> None:
        with self.lock:
            self.confs.append(path)

    def _pids(self) -> dict[int, float]:
        """{pid: start time} of every process this benchmark started that is still alive:
        its Popens and supervisords with all their descendants, and any process whose
        command line names the work folder or whose HOME is the temporary one (e.g. one
        re-parented to init)."""
        roots = [p.pid for p in self.popens]
        for conf in self.confs:
            try:
                roots.append(int((conf.parent / "supervisord.pid").read_text()))
            except (FileNotFoundError, ValueError):
                pass
        found = {}
        for pid in roots:
            try:
                root = psutil.Process(pid)
                for proc in (root, *root.children(recursive=True)):
                    found[proc.pid] = proc.create_time()
            except psutil.NoSuchProcess:
                pass
        marker, home = str(self.workdir), str(self.workdir / "home")
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            if proc.pid == os.getpid():
                continue
            try:
                ours = (marker in " ".join(proc.info["cmdline"] or ())
                        or proc.environ().get("HOME") == home)
            except psutil.Error:
                continue
            if ours:
                found[proc.pid] = proc.info["create_time"]
        return found

    def end_commands(self, name: str) -> None:
        """SIGTERM to the process groups of the commands started whose program is ``name``."""
        for proc in self.popens:
            if Path(str(proc.args[0])).name == name:
                _signal_group(proc, signal.SIGTERM)

    def stop_all(self) -> list[str]:
        """Shut every supervisord down, end every other process; returns notes on what
        did not stop by itself."""
        notes = []
        pids = self._pids()
        for conf in self.confs:
            if (conf.parent / "supervisord.pid").is_file():
                t0 = time.monotonic()
                proc = subprocess.run([str(BIN / "supervisorctl"), "-c", str(conf), "shutdown"],
                                      capture_output=True, text=True, timeout=60)
                if proc.returncode != 0:
                    notes.append(f"`supervisorctl -c {conf} shutdown`: {proc.returncode} "
                                 f"{(proc.stdout + proc.stderr).strip()}")
                log(f"supervisorctl shutdown ({folder_name(conf.parent)}) returned after "
                    f"{time.monotonic() - t0:.1f} s")
        others = [p for p in self.popens if p is not self.broker]
        for proc in others:
            _signal_group(proc, signal.SIGTERM)
        broker_pids = {}
        if self.broker is not None:
            broker_pids = {pid: t for pid, t in pids.items() if pid == self.broker.pid}
        pids = {pid: t for pid, t in pids.items() if pid not in broker_pids}
        t0 = time.monotonic()
        while time.monotonic() < t0 + 30 and _alive(pids):
            time.sleep(0.2)
        log(f"the benchmark's processes stopped {time.monotonic() - t0:.1f} s after "
            f"shutdown/SIGTERM" if not _alive(pids) else "some processes did not stop")
        for pid in _alive(pids):
            notes.append(f"pid {pid} ({_cmd(pid)}) still ran 30 s after shutdown/SIGTERM: killed")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.broker is not None:
            # nafka lingers after SIGTERM while clients are connected (research notes)
            _signal_group(self.broker, signal.SIGTERM)
            try:
                self.broker.wait(3)
            except subprocess.TimeoutExpired:
                _signal_group(self.broker, signal.SIGKILL)
        for proc in self.popens:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                notes.append(f"pid {proc.pid} ({' '.join(map(str, proc.args))[:100]}) "
                             f"did not exit")
        return notes


def _signal_group(proc: subprocess.Popen, signum) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass


def _alive(pids: dict[int, float]) -> list[int]:
    alive = []
    for pid, started in pids.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _cmd(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())[:120]
    except psutil.Error:
        return "?"


# ---------------------------------------------------------------- the broker

def start_nafka(started: Started, workdir: Path, env: dict) -> str:
    port = free_port()
    out = open(workdir / "nafka.log", "wb")
    proc = started.popen([sys.executable, NAFKA, "--port", port,
                          "--file", workdir / "kafka.sqlite"], env=env, stdout=out,
                         stderr=subprocess.STDOUT)
    started.broker = proc

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"nafka exited ({proc.returncode}); see {workdir / 'nafka.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for(up, 30, "nafka listening")
    broker = f"127.0.0.1:{port}"
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[broker])
    for topic in TOPICS:   # the facility's topics exist before anyone subscribes
        producer.send(topic, b'{"event": "topic-created"}')
    producer.flush()
    producer.close()
    return broker


# ---------------------------------------------------------------- ours

def serve_ours(started: Started, folders: list[Path], env: dict, logdir: Path) -> dict:
    """``damnit-dagster --dir F serve`` for all folders at once: {folder: seconds to ready}."""
    def one(folder: Path) -> float:
        started.conf(folder / "supervisord.conf")
        t0 = time.monotonic()
        with open(logdir / f"serve-{folder_name(folder)}.log", "wb") as out:
            proc = started.popen([BIN / "damnit-dagster", "--dir", folder, "serve"],
                                 env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(240)
            except subprocess.TimeoutExpired:
                rc = "timeout (240 s)"
        if rc != 0:
            text = (logdir / f"serve-{folder_name(folder)}.log").read_text(errors="replace")
            raise RuntimeError(f"serve of {folder} failed ({rc}):\n{text[-2000:]}\n"
                               f"end of amore.log:\n{_tail(folder / 'amore.log')}")
        return time.monotonic() - t0

    with ThreadPoolExecutor(len(folders)) as pool:
        return dict(zip(folders, pool.map(one, folders)))


def folder_name(folder: Path) -> str:
    """p002001 for .../p002001/usr/Shared/amore, else the folder's name."""
    for part in reversed(folder.parts):
        if part.startswith("p00"):
            return part
    return folder.name


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return "(none)"


# ---------------------------------------------------------------- DAMNIT 0.4.0

def damnit_listener_ready(logfile: Path, proc: subprocess.Popen | None = None) -> bool:
    if proc is not None and proc.poll() is not None:
        raise RuntimeError(f"DAMNIT's listener exited ({proc.returncode}): {_tail(logfile)}")
    return logfile.is_file() and "Started listener" in logfile.read_text(errors="replace")


def setup_damnit(workdir: Path, proposals: list[int], env: dict, logfile: Path):
    """DAMNIT folders for ``proposals`` and a listener folder with them registered."""
    damnit = BIN / "damnit"
    folders = []
    for proposal in proposals:
        folder = workdir / "damnit" / f"p{proposal:06d}"
        run([damnit, "init", folder, "--proposal", proposal, "--context", CONTEXT],
            env=env, logfile=logfile)
        folders.append(folder)
    central = workdir / "damnit-listener"
    central.mkdir()
    for proposal, folder in zip(proposals, folders):
        run([damnit, "listener", "add", proposal, folder], env=env, cwd=central, logfile=logfile)
        # per folder (``listen --daemonize`` in the folder): its own listener.sqlite
        run([damnit, "listener", "add", proposal, folder], env=env, cwd=folder, logfile=logfile)
    for where in (central, *folders):
        run([damnit, "listener", "config", "allow_local_processing", "1", "--num"],
            env=env, cwd=where, logfile=logfile)
    wrapper = workdir / "damnit_listen_local.py"
    wrapper.write_text(DAMNIT_WRAPPER)
    return central, folders, wrapper


def start_damnit_central(started: Started, central: Path, wrapper: Path, env: dict):
    out = open(central / "listener.stderr", "wb")
    proc = started.popen([sys.executable, wrapper, central], env=env, cwd=central,
                         stdout=out, stderr=subprocess.STDOUT)
    return proc


def start_damnit_per_folder(started: Started, folder: Path, wrapper: Path, env: dict) -> None:
    conf = folder / "supervisord.conf"
    conf.write_text(DAMNIT_SUPERVISORD_CONF.format(
        port=free_port(), user=secrets.token_hex(16), password=secrets.token_hex(32),
        command=f"{sys.executable} {wrapper} .", directory=folder))
    started.conf(conf)
    run([BIN / "supervisord", "-c", conf], env=env, cwd=folder,
        logfile=folder / "bench-start.log")


# ---------------------------------------------------------------- measuring

def role(cmdline: list[str]) -> str:
    """What a process of the trees is, from its command line."""
    args = cmdline[1:] if cmdline and Path(cmdline[0]).name.startswith("python") else cmdline
    if not args:
        return "?"
    program = args[1] if args[0] == "-m" and len(args) > 1 else Path(args[0]).name
    if program == "supervisord":
        return "supervisord"
    if program == "damnit-dagster" and "listen" in args:
        return "`listen` (our threads: Kafka bridge, context watcher, activity log)"
    if program == "dagster" and "code-server" in args:
        return "code server (`dagster code-server`)"
    if program == "dagster" and "grpc" in args:
        return "code server's gRPC process (`dagster api grpc`, loads the definitions)"
    if program == "dagster-webserver":
        return "webserver (`dagster-webserver`)"
    if program == "damnit_dagster.plugins.launcher" and "--zygote" in args:
        return "warm run worker (`damnit_dagster.plugins.launcher --zygote`; runs fork from it)"
    if program == "damnit_dagster.plugins.daemon":
        return "daemon (`damnit_dagster.plugins.daemon`)"
    if program == "damnit_listen_local.py":
        return "DAMNIT listener (`damnit listen`)"
    return " ".join(args)[:60]


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def per_process(pid: int) -> dict[int, tuple[str, int, int]]:
    """{pid: (role, RSS, PSS)} of the tree of ``pid``."""
    out = {}
    for proc in tree(pid):
        try:
            with proc.oneshot():
                mem = proc.memory_full_info()
                out[proc.pid] = (role(proc.cmdline()), mem.rss, mem.pss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def foreign_connections(pid: int, broker_port: int) -> tuple[list[str], bool]:
    """(connections of the tree to addresses other than 127.0.0.1, whether one of its
    processes is connected to the broker)."""
    foreign, to_broker = [], False
    for proc in tree(pid):
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if c.raddr:
                if not _loopback(c.raddr.ip):
                    foreign.append(f"pid {proc.pid} -> {c.raddr.ip}:{c.raddr.port}")
                if c.raddr.port == broker_port:
                    to_broker = True
            elif c.laddr and c.status == psutil.CONN_LISTEN and not _loopback(c.laddr.ip):
                foreign.append(f"pid {proc.pid} listens on {c.laddr.ip}:{c.laddr.port}")
    return foreign, to_broker


def _loopback(ip: str) -> bool:
    return ip.startswith(("127.", "::ffff:127.")) or ip == "::1"


def _written(pid: int) -> int:
    """Bytes process ``pid`` sent to storage: ``write_bytes`` less ``cancelled_write_bytes``
    of /proc/PID/io (pages dirtied, then truncated away before writeback, as those of an
    SQLite rollback journal deleted at commit, were not written)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["write_bytes"]) - int(fields["cancelled_write_bytes"])


def counters(pid: int) -> dict:
    """{(pid, start time): (user+sys CPU seconds, bytes sent to storage)} of the tree."""
    out = {}
    for proc in tree(pid):
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                key = (proc.pid, proc.create_time())
            out[key] = (times.user + times.system, _written(proc.pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError,
                PermissionError, ProcessLookupError):
            pass
    return out


def used(start: dict, end: dict, index: int, pid: int | None = None) -> float:
    """Growth of counter ``index`` between two :func:`counters` (of process ``pid`` only,
    if given); a process started in between counts whole, one ended in between not at all.
    A process's growth is at least 0 (bytes written can shrink when pages dirtied before
    the window are cancelled in it)."""
    return sum(max(0.0, v[index] - start.get(key, (0, 0))[index])
               for key, v in end.items() if pid is None or key[0] == pid)


def file_sizes(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        elif path.is_file():
            total += path.stat().st_size
    return total


class Entity:
    """One measured process tree: a backend of ours, DAMNIT's central listener, or one of
    DAMNIT's per-folder supervisords."""

    def __init__(self, label: str, kind: str, pid_source, logs: list[Path]):
        self.label, self.kind, self._pid_source = label, kind, pid_source
        self.logs = logs
        self.rss, self.pss, self.nprocs = [], [], []
        self.log_start = self.log_end = 0
        self.offsets: dict[Path, int] = {}
        self.count_start: dict = {}
        self.count_end: dict = {}

    @property
    def pid(self) -> int:
        return self._pid_source()

    def mark_ready(self):
        """All backends are ready: the lines written to the logs from now on are quoted."""
        self.offsets = {p: (p.stat().st_size if p.is_file() else 0) for p in self.logs}

    def begin_window(self):
        """Start of the steady idle window, over which the rates are taken."""
        self.log_start = sum(p.stat().st_size if p.is_file() else 0 for p in self.logs)
        self.count_start = counters(self.pid)

    def sample(self):
        rss, pss, _ = tree_sample(self.pid, pss=True)
        self.rss.append(rss)
        self.pss.append(pss)
        self.nprocs.append(len(tree(self.pid)))

    def end_window(self):
        self.count_end = counters(self.pid)
        self.log_end = sum(p.stat().st_size if p.is_file() else 0 for p in self.logs)

    def cpu_used(self, pid: int | None = None) -> float:
        """CPU seconds of the tree (or of process ``pid``) in the window."""
        return used(self.count_start, self.count_end, 0, pid)

    def written(self, pid: int | None = None) -> float:
        """Bytes the tree (or process ``pid``) wrote to storage in the window."""
        return used(self.count_start, self.count_end, 1, pid)

    def new_lines(self) -> dict[Path, list[str]]:
        out = {}
        for path, offset in self.offsets.items():
            if path.is_file():
                with open(path, "rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
                if text.strip():
                    out[path] = text.splitlines()
        return out


def supervisord_pid(folder: Path):
    return lambda: int((folder / "supervisord.pid").read_text())


# ---------------------------------------------------------------- the report

def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "–"


def report(args, ours: list[Entity], central: Entity, per_folder: list[Entity],
           breakdown: dict, window_s: float, serve_times: dict, notes: list[str],
           net: list[str], load: str, settle: float) -> str:
    n = len(ours)
    med = lambda xs: statistics.median(xs) / MiB  # noqa: E731
    cpu = lambda e, pid=None: 100 * e.cpu_used(pid) / window_s  # noqa: E731
    disk = lambda e, pid=None: e.written(pid) * 60 / window_s / 1024  # noqa: E731

    def growth(e: Entity) -> float:
        return (e.log_end - e.log_start) * 60 / window_s

    c_rss, c_pss = med(central.rss), med(central.pss)

    def row(label, entities, log_name="", ratio=True, bold=False):
        rss = sum(med(e.rss) for e in entities)
        pss = sum(med(e.pss) for e in entities)
        ratios = [fmt_ratio(rss, c_rss), fmt_ratio(pss, c_pss)] if ratio else ["", ""]
        if bold:
            ratios = [f"**{r}**" for r in ratios]
        procs = sum(statistics.median(e.nprocs) for e in entities)
        return (f"| {label} | {procs:g} | {rss:.0f} | {pss:.0f} | {ratios[0]} | {ratios[1]} "
                f"| {sum(cpu(e) for e in entities):.1f} "
                f"| {sum(disk(e) for e in entities):.0f} "
                f"| {sum(growth(e) for e in entities):.0f}{log_name} |")

    lines = [
        f"N = {n} DAMNIT folders. Everything idled {args.idle:g} s after the last backend was "
        f"ready, then memory was sampled {args.samples} times 1 s apart (median shown); CPU, "
        f"disk writes and log growth are over {window_s:.0f} s: the idle time after its "
        f"first {settle:g} s, and the sampling. Machine: {load} at the start of sampling.",
        "",
        "| process tree | processes | RSS sum (MiB) | PSS sum (MiB) | RSS / DAMNIT central "
        "| PSS / DAMNIT central | CPU while idle (% of a core) | written to disk while idle "
        "(KiB/min) | log growth while idle (B/min) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [row(f"ours: backend of {e.label}", [e], " (amore.log)") for e in ours]
    lines.append(row(f"**ours: total, {n} backends**", ours, bold=True))
    lines.append(row(f"**DAMNIT 0.4.0 central: 1 listener for {n} proposals**", [central],
                     " (damnit.log)", ratio=False))
    lines += [row(f"DAMNIT 0.4.0 per folder ({e.label}): supervisord + `damnit listen .`", [e],
                  " (damnit.log + supervisord.log)") for e in per_folder]
    if per_folder:
        lines.append(row(f"DAMNIT 0.4.0 per folder: total, {n} supervisords", per_folder))
    t_pss = sum(med(e.pss) for e in ours)
    t_rss = sum(med(e.rss) for e in ours)
    lines += [""]
    if per_folder:
        p_rss, p_pss = (sum(med(e.rss) for e in per_folder),
                        sum(med(e.pss) for e in per_folder))
        lines.append(f"Ours against DAMNIT's per-folder set-up (`listen --daemonize` in each "
                     f"folder), totals: RSS {fmt_ratio(t_rss, p_rss)}, PSS "
                     f"{fmt_ratio(t_pss, p_pss)}.")
    lines += [
        f"Ours costs {t_pss / n:.0f} MiB PSS per backend; DAMNIT's central listener "
        f"{c_pss:.0f} MiB PSS for all {n} proposals.",
        "Time for `serve` to return (the backends started together): " + ", ".join(
            f"{folder_name(f)} {t:.1f} s" for f, t in serve_times.items()) + ".",
        "Connections to addresses other than 127.0.0.1: "
        + ("; ".join(net) if net else "none") + ".",
    ]

    label, procs = breakdown["label"], breakdown["procs"]
    e0 = breakdown["entity"]
    lines += ["", f"Where the memory of one backend goes ({label}, median of the samples):", "",
              "| process | RSS (MiB) | PSS (MiB) | CPU while idle (% of a core) "
              "| written to disk while idle (KiB/min) |",
              "| --- | --- | --- | --- | --- |"]
    order = sorted(procs, key=lambda pid: -statistics.median(s[2] for s in procs[pid]))
    for pid in order:
        samples = procs[pid]
        lines.append(f"| {samples[0][0]} | {med([s[1] for s in samples]):.0f} "
                     f"| {med([s[2] for s in samples]):.0f} | {cpu(e0, pid):.1f} "
                     f"| {disk(e0, pid):.0f} |")
    lines.append(f"| all | {sum(med([s[1] for s in v]) for v in procs.values()):.0f} "
                 f"| {sum(med([s[2] for s in v]) for v in procs.values()):.0f} "
                 f"| {cpu(e0):.1f} | {disk(e0):.0f} |")

    quoted = []
    for e in [*ours, central, *per_folder]:
        for path, new in e.new_lines().items():
            quoted.append(f"* {e.kind} {e.label}, {path.name} ({len(new)} lines):")
            quoted += [f"  `{line[:220]}`" for line in new[:8]]
            if len(new) > 8:
                quoted.append(f"  ... and {len(new) - 8} more")
    lines += ["", "Lines written to the logs after every backend was ready: "
              + ("none." if not quoted else "")]
    lines += quoted
    if notes:
        lines += ["", "Notes:"] + [f"* {note}" for note in notes]
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--backends", type=int, default=2,
                        help="number of DAMNIT folders (default 2)")
    parser.add_argument("--idle", type=float, default=30,
                        help="seconds of idling before sampling (default 30)")
    parser.add_argument("--samples", type=int, default=5, help="samples, 1 s apart (default 5)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    if args.workdir:
        if args.workdir.exists() and any(args.workdir.iterdir()):
            parser.error(f"{args.workdir} is not empty")
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = args.workdir.absolute()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="idle-backends-"))
    started = Started(workdir)

    def on_signal(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    notes: list[str] = []
    try:
        table = bench(args, workdir, started, notes)
    finally:
        log("stopping everything")
        stop_notes = started.stop_all()
        for note in stop_notes:
            log(note)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    if stop_notes:
        table += "\n" + "\n".join(f"* clean-up: {n}" for n in stop_notes)
    print(table)
    return 0


def bench(args, workdir: Path, started: Started, notes: list[str]) -> str:
    from damnit_dagster.ops.mockdata import make_proposal

    n = args.backends
    data, home, logdir = workdir / "data", workdir / "home", workdir / "logs"
    for d in (home, logdir):
        d.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DAGSTER_", "XDG_", "DAMNIT_", "AMORE_"))
           and k not in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    env.update(HOME=str(home), EXTRA_DATA_DATA_ROOT=str(data), XFEL_DATA_ROOT=str(data),
               NO_PROXY="*", MPLBACKEND="Agg")
    proposals = list(range(FIRST_PROPOSAL, FIRST_PROPOSAL + n))

    log(f"work folder {workdir}; starting nafka")
    broker = start_nafka(started, workdir, env)
    env["AMORE_BROKER"] = broker
    broker_port = int(broker.rsplit(":", 1)[1])

    log(f"mock data and our {n} DAMNIT folders")
    folders = []
    for proposal in proposals:
        make_proposal(data, proposal, runs=range(1, 3))
        out = run([BIN / "damnit-dagster", "init", proposal, "--context", CONTEXT],
                  env=env, logfile=logdir / "setup.log")
        folder = Path(out.strip().splitlines()[-1])
        run([BIN / "damnit-dagster", "--dir", folder, "db-config", "kafka_brokers", broker],
            env=env, logfile=logdir / "setup.log")
        folders.append(folder)

    log(f"serving our {n} backends; meanwhile setting up DAMNIT 0.4.0")
    pool = ThreadPoolExecutor(1)
    try:
        serving = pool.submit(serve_ours, started, folders, env, logdir)
        central_dir, damnit_folders, wrapper = setup_damnit(workdir, proposals, env,
                                                             logdir / "damnit-setup.log")
        central_proc = start_damnit_central(started, central_dir, wrapper, env)
        for folder in damnit_folders:
            start_damnit_per_folder(started, folder, wrapper, env)
        wait_for(lambda: damnit_listener_ready(central_dir / "damnit.log", central_proc), 60,
                 "DAMNIT's central listener started")
        for folder in damnit_folders:
            wait_for(lambda: damnit_listener_ready(folder / "damnit.log"), 60,
                     f"DAMNIT's listener of {folder}")
        serve_times = serving.result()
    except BaseException:
        started.end_commands("damnit-dagster")   # do not wait for `serve` to give up
        raise
    finally:
        pool.shutdown(wait=True)
    for folder, seconds in serve_times.items():
        log(f"ours: {folder_name(folder)} ready after {seconds:.1f} s")

    state_root = home / ".local" / "state" / "damnit-dagster"
    instances = {Path((d / "damnit_folder.txt").read_text().strip())
                 for d in state_root.iterdir() if (d / "damnit_folder.txt").is_file()}
    for folder in folders:
        if folder not in instances:
            notes.append(f"no Dagster instance of {folder} under {state_root}")

    ours = [Entity(f"p{p}", "ours", supervisord_pid(f), [f / "amore.log"])
            for p, f in zip(proposals, folders)]
    central = Entity(f"{n} proposals", "DAMNIT central", lambda: central_proc.pid,
                     [central_dir / "damnit.log"])
    per_folder = [Entity(f"p{p}", "DAMNIT per folder", supervisord_pid(f),
                         [f / "damnit.log", f / "supervisord.log"])
                  for p, f in zip(proposals, damnit_folders)]
    entities = [*ours, central, *per_folder]

    for e in entities:
        e.mark_ready()
    settle = min(10.0, args.idle / 3)
    log(f"all ready; idling {args.idle:g} s (rates over the last {args.idle - settle:g} s "
        f"and the sampling)")
    time.sleep(settle)
    for e in entities:
        e.begin_window()
    t0 = time.monotonic()
    time.sleep(args.idle - settle)
    load = load_note()
    breakdown = {"label": f"p{proposals[0]}", "procs": {}, "entity": ours[0]}
    for i in range(args.samples):
        if i:
            time.sleep(1)
        for e in entities:
            e.sample()
        for pid, sample in per_process(ours[0].pid).items():
            breakdown["procs"].setdefault(pid, []).append(sample)
    for e in entities:
        e.end_window()
    window_s = time.monotonic() - t0

    net = []
    for e in entities:
        foreign, to_broker = foreign_connections(e.pid, broker_port)
        net += [f"{e.kind} {e.label}: {x}" for x in foreign]
        if not to_broker:
            notes.append(f"{e.kind} {e.label}: no process of its tree is connected to the "
                         f"broker {broker}")
    for e in entities:
        if len(set(e.nprocs)) > 1:
            notes.append(f"{e.kind} {e.label}: the number of processes changed while "
                         f"sampling: {e.nprocs}")
    return report(args, ours, central, per_folder, breakdown, window_s, serve_times, notes,
                  net, load, settle)


if __name__ == "__main__":
    sys.exit(main())
