"""Small tools shared by the benchmarks: running commands, wall time and peak memory of a
process tree, the machine's load."""
from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
#: The context file the benchmarks use: the 25-variable one, or ``$DAMNIT_BENCH_CONTEXT``
#: (e.g. one written by ``cheap_context.py``).
CONTEXT = Path(os.environ.get("DAMNIT_BENCH_CONTEXT")
               or REPO / "damnit_dagster" / "templates" / "context_25vars.py")
#: The project's venv (or whichever runs the benchmark): its ``bin`` folder.
BIN = Path(sys.executable).parent
#: The mock proposal ``compare_damnit.py`` reprocesses.
PROPOSAL = 1234
MiB = 2 ** 20


def log(msg: str) -> None:
    """A progress line on stderr (tables go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    """``condition()`` until it is true (returned); ``RuntimeError`` after ``timeout``."""
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


def fresh(path: Path) -> Path:
    """``path`` as a new empty folder."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return "(none)"


def folder_name(folder: Path) -> str:
    """p002001 for .../p002001/usr/Shared/amore, else the folder's name."""
    for part in reversed(folder.parts):
        if part.startswith("p00"):
            return part
    return folder.name


def check_stored(folder: Path, proposal: int, nruns: int, who: str) -> None:
    """Every run 1..nruns has rows in ``run_variables`` (a benchmark of work not done is
    void)."""
    with sqlite3.connect(folder / "runs.sqlite") as conn:
        done = {r for (r,) in conn.execute(
            "SELECT DISTINCT run FROM run_variables WHERE proposal = ?", (proposal,))}
    missing = sorted(set(range(1, nruns + 1)) - done)
    if missing:
        raise RuntimeError(f"{who}: no results for runs {missing} in {folder}/runs.sqlite")


def tree(pid: int) -> list[psutil.Process]:
    """Process ``pid`` and its descendants (none if it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_sample(pid: int, pss: bool = False) -> tuple[int, int | None, dict]:
    """(RSS in bytes summed over process ``pid`` and its descendants, the same for PSS if
    ``pss`` (else None), {(pid, start time): user+sys CPU seconds of that process alone}).

    The RSS sum counts a page shared by forked processes once per process; the PSS
    (proportional set size) sum counts it once in all: the memory the tree really uses.
    PSS costs the kernel a walk of each process's pages, so it is slower to read."""
    procs = tree(pid)
    if not procs:
        return 0, None, {}
    rss, pss_sum, cpu = 0, 0 if pss else None, {}
    for proc in procs:
        try:
            with proc.oneshot():
                if pss:
                    memory = proc.memory_full_info()
                    pss_sum += memory.pss
                else:
                    memory = proc.memory_info()
                rss += memory.rss
                times = proc.cpu_times()
                cpu[(proc.pid, proc.create_time())] = times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss, pss_sum, cpu


class PeakTreeRSS:
    """Samples the process tree of ``pid`` every ``interval`` seconds in a thread.

    :attr:`peak` is the largest RSS sum seen (bytes), :attr:`peak_pss` the largest PSS
    sum (bytes, sampled every ``PSS_EVERY`` intervals); :attr:`cpu` the CPU seconds
    (user+sys) of every process seen, as last sampled (a process misses at most its last
    ``interval`` of CPU). Use as a context manager."""

    #: PSS is sampled every this many samples only (it is slower to read).
    PSS_EVERY = 10

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval, self.peak, self.peak_pss = pid, interval, 0, 0
        self._cpu: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def cpu(self) -> float:
        return sum(self._cpu.values())

    @property
    def cpu_by_process(self) -> dict:
        """{(pid, start time): CPU seconds} of every process seen, as last sampled."""
        return dict(self._cpu)

    def _sample(self):
        count = 0
        while not self._stop.is_set():
            rss, pss, cpu = tree_sample(self.pid, pss=count % self.PSS_EVERY == 0)
            count += 1
            self.peak = max(self.peak, rss)
            if pss is not None:
                self.peak_pss = max(self.peak_pss, pss)
            self._cpu.update(cpu)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    """Wall time (s), CPU time of the tree (s) and peak tree RSS and PSS (MiB) of one or
    more commands run one after another."""

    wall: float = 0.0
    cpu: float = 0.0
    peak_mib: float = 0.0
    peak_pss_mib: float = 0.0


def run_measured(commands: list[list], *, cwd, env: dict, log: Path,
                 timeout: float = 7200) -> Measured:
    """Run ``commands`` in sequence (each must succeed), output appended to ``log``.

    The wall and CPU times cover all of them; the peak is the largest tree RSS of any of them.
    Raises ``RuntimeError`` with the log's tail when a command fails.
    """
    result = Measured()
    with open(log, "ab") as out:
        for cmd in commands:
            cmd = [str(c) for c in cmd]
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
            with PeakTreeRSS(proc.pid) as peak:
                try:
                    rc = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    rc = "timeout"
            result.wall += time.perf_counter() - t0
            result.cpu += peak.cpu
            result.peak_mib = max(result.peak_mib, peak.peak / 2**20)
            result.peak_pss_mib = max(result.peak_pss_mib, peak.peak_pss / 2**20)
            if rc != 0:
                tail = log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{' '.join(cmd)} failed ({rc}); end of {log}:\n{tail}")
    return result


def load_note() -> str:
    """The machine's load averages and core count, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"
