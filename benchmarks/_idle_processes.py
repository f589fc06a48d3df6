"""What ``idle_backends.py`` starts (the broker, supervisords, commands) and stopping it all
at the end, also on failure."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from _bench_util import BIN, REPO, folder_name, free_port, log, wait_for

NAFKA = REPO / "tests" / "support" / "nafka_server.py"
TOPICS = ("test.r2d2", "cal.offline-corrections")


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

