"""Several DAMNIT folders on one host under one user, as a facility runs them: each
folder's backend (``serve``, with no ``DAGSTER_HOME`` set) works on its own."""
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PROPOSALS = (1234, 5678, 9012)


def damnit(folder, *args, env, check=True, timeout=300):
    result = subprocess.run([str(BIN / "damnit-dagster"), *map(str, args)], cwd=folder,
                            env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"damnit-dagster {' '.join(map(str, args))} in {folder} failed:"
                             f"\n{result.stdout}\n{result.stderr}")
    return result


def supervisorctl(folder, *args, env):
    return subprocess.run([str(BIN / "supervisorctl"), "-c", "supervisord.conf", *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def stored(folder, run) -> dict:
    """{name: timestamp} of the values stored for ``run`` in the folder's runs.sqlite."""
    with sqlite3.connect(f"file:{folder / 'runs.sqlite'}?mode=ro", uri=True, timeout=10) as c:
        return dict(c.execute("SELECT name, timestamp FROM run_variables WHERE run = ?", (run,)))


def wait_stored(folder, run, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if values := stored(folder, run):
            return values
        time.sleep(0.3)
    raise AssertionError(f"r{run} not stored in {folder} after {timeout} s:\n"
                         f"{(folder / 'amore.log').read_text()[-3000:]}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three proposals' mock runs 1-3."""
    from damnit_dagster.ops.mockdata import make_proposal

    root = tmp_path_factory.mktemp("data")
    for proposal in PROPOSALS:
        make_proposal(root, proposal, runs=[1, 2, 3])
    return root


@pytest.fixture
def host(tmp_path, data):
    """A DAMNIT folder for each proposal, a HOME of their own and no DAGSTER_HOME.
    Every supervisord started is shut down at the end."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "XDG_STATE_HOME")}
    env.update(HOME=str(tmp_path / "home"), EXTRA_DATA_DATA_ROOT=str(data),
               XFEL_DATA_ROOT=str(data), MPLBACKEND="Agg")
    (tmp_path / "home").mkdir()
    folders = {}
    for proposal in PROPOSALS:
        folders[proposal] = tmp_path / f"p{proposal}"
        damnit(tmp_path, "init", proposal, "--path", folders[proposal], env=env)
    yield folders, env
    for folder in folders.values():
        if (folder / "supervisord.conf").exists():
            supervisorctl(folder, "shutdown", env=env)


@pytest.mark.slow
def test_two_folders_served_side_by_side(host):
    folders, env = host
    a, b, c = (folders[p] for p in PROPOSALS)
    # Both served at once, each with its own Supervisor, backend and Dagster instance.
    serving = {f: subprocess.Popen([str(BIN / "damnit-dagster"), "serve"], cwd=f, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for f in (a, b)}
    for folder, proc in serving.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"serve in {folder}: {out}\n{err}"
        assert re.match(r"damnit\s+RUNNING\s+pid \d+", out), out
        assert "Dagster UI: http://127.0.0.1:" in out
    homes = sorted((Path(env["HOME"]) / ".local" / "state" / "damnit-dagster").iterdir())
    assert len(homes) == 2
    assert {(h / "damnit_folder.txt").read_text().strip() for h in homes} == {str(a), str(b)}

    # Idle: amore.log is for people, not a line per sensor tick.
    sizes = {f: len((f / "amore.log").read_text().splitlines()) for f in (a, b)}
    time.sleep(20)
    for folder in (a, b):
        lines = (folder / "amore.log").read_text().splitlines()
        assert len(lines) - sizes[folder] <= 1, lines[sizes[folder]:]

    # Events to each are processed by its own backend.
    damnit(a, "event", "migration", 1, env=env)
    damnit(b, "event", "migration", 2, env=env)
    assert wait_stored(a, 1) and wait_stored(b, 2)
    assert not stored(a, 2) and not stored(b, 1)

    # reprocess in each, while both run: each folder's own daemon does it.
    for folder, proposal in ((a, 1234), (b, 5678)):
        out = damnit(folder, "reprocess", 3, env=env).stdout
        assert f"p{proposal}: 1 of 1 runs processed" in out, out
        assert stored(folder, 3)

    # Restarting A's backend leaves B's running and processing.
    b_pid = supervisorctl(b, "status", "damnit", env=env).stdout.split()[3]
    b_values = stored(b, 2)
    restart = subprocess.Popen([str(BIN / "supervisorctl"), "-c", "supervisord.conf",
                                "restart", "damnit"], cwd=a, env=env,
                               stdout=subprocess.PIPE, text=True)
    damnit(b, "event", "migration", 1, env=env)
    assert wait_stored(b, 1)
    assert restart.wait(120) == 0
    assert supervisorctl(b, "status", "damnit", env=env).stdout.split()[3] == b_pid
    assert stored(b, 2) == b_values
    # An event for A while its backend is stopped waits in A's inbox until it is back.
    assert supervisorctl(a, "stop", "damnit", env=env).returncode == 0
    damnit(a, "event", "migration", 2, env=env)
    time.sleep(3)
    assert not stored(a, 2)
    assert supervisorctl(a, "start", "damnit", env=env).returncode == 0
    assert wait_stored(a, 2, timeout=180)

    # A third folder, no backend of its own: reprocess does the work itself.
    out = damnit(c, "reprocess", 1, env=env).stdout
    assert "p9012: 1 of 1 runs processed" in out, out
    assert stored(c, 1)

    for folder, proposal, other in ((a, 1234, 5678), (b, 5678, 1234)):
        log = (folder / "amore.log").read_text()
        assert "\x1b" not in log                         # no terminal colour codes
        assert "Traceback" not in log
        assert f"of p{proposal} r" in log and f"of p{other} r" not in log
        assert re.search(r"INFO Dagster run \w+ r\d \(migration\): success", log), log


def test_a_backend_that_cannot_start_says_why_in_one_line(host):
    import socket

    folders, env = host
    folder = folders[1234]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = damnit(folder, "serve", "--port", port, env=env, check=False)
        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [
            f"Error: the backend of {folder} did not start: port {port} of the Dagster UI is "
            f"in use by another program: choose another with --port"]
        time.sleep(2)   # Supervisor does not try again: the reason stays
        assert supervisorctl(folder, "status", "damnit", env=env).stdout.split()[1] == "EXITED"
    log = (folder / "amore.log").read_text()
    assert log.count("cannot start") == 1 and "Traceback" not in log


def test_an_instance_shared_by_choice_serves_one_folder_at_a_time(host, tmp_path):
    """An explicitly set DAGSTER_HOME is used as it is; a second folder's backend on it
    says which folder holds it, and reprocess there does not hand work to that one."""
    from damnit_dagster.ops.backend import EXIT_CANNOT_START, backend_lock, write_status

    folders, env = host
    a, b = folders[1234], folders[5678]
    home = tmp_path / "shared_home"
    env = {**env, "DAGSTER_HOME": str(home)}
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        lock = backend_lock()
        lock.acquire(timeout=0)
        write_status(home, folder=str(a), state="ready", url="http://127.0.0.1:1")
        try:
            result = damnit(b, "listen", env=env, check=False, timeout=60)
            assert result.returncode == EXIT_CANNOT_START
            assert f"the Dagster instance {home} already serves the backend of {a}" in result.stderr
            assert "Traceback" not in result.stderr
            out = damnit(b, "reprocess", 1, env=env).stdout
            assert "p5678: 1 of 1 runs processed" in out
        finally:
            lock.release()
    finally:
        del os.environ["DAGSTER_HOME"]


def test_each_folder_has_its_own_instance_unless_dagster_home_is_set(host, monkeypatch):
    from damnit_dagster.plugins.home import dagster_home

    folders, env = host
    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    homes = {dagster_home(folder) for folder in folders.values()}
    assert len(homes) == 3
    assert all(h.parent == Path(env["HOME"]) / ".local" / "state" / "damnit-dagster"
               and (h / "dagster.yaml").is_file() for h in homes)
    assert dagster_home(folders[1234]) in homes     # the same folder, the same instance
    monkeypatch.setenv("DAGSTER_HOME", str(Path(env["HOME"]) / "mine"))
    assert dagster_home(folders[1234]) == Path(env["HOME"]) / "mine"
