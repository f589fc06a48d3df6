"""What ``idle_backends.py`` measures of a process tree while it idles: memory, CPU,
bytes written, log growth, connections, and what each process is."""
from __future__ import annotations

from pathlib import Path

import psutil
from _bench_util import tree, tree_sample


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

