"""Small tools shared by the benchmarks: wall time and peak memory of a process tree."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of process ``pid`` and all its descendants, summed."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakTreeRSS:
    """Samples :func:`tree_rss` of ``pid`` every ``interval`` seconds in a thread; the
    largest sum seen is :attr:`peak` (bytes). Use as a context manager."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    """Wall time (s) and peak tree RSS (MiB) of one or more commands run one after another."""

    wall: float = 0.0
    peak_mib: float = 0.0


def run_measured(commands: list[list], *, cwd, env: dict, log: Path,
                 timeout: float = 7200) -> Measured:
    """Run ``commands`` in sequence (each must succeed), output appended to ``log``.

    The wall time covers all of them; the peak is the largest tree RSS of any of them.
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
            result.peak_mib = max(result.peak_mib, peak.peak / 2**20)
            if rc != 0:
                tail = log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{' '.join(cmd)} failed ({rc}); end of {log}:\n{tail}")
    return result


def load_note() -> str:
    """The machine's load averages and core count, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"
