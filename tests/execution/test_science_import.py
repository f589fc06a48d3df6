"""Backends starting together on one host all load a context file that imports ``extra``.

``extra``'s first import writes pint's cache in ``~/.cache/pint`` non-atomically; without
the host-wide lock some of several processes starting at once read it half-written
(``EOFError``) and their code location served no variables.
"""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.slow

DESCRIBE = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from damnit_dagster.execution.describe import describe_file
    folder = Path(sys.argv[1])
    (folder / f"ready-{sys.argv[2]}").touch()
    while not (folder / "go").exists():   # all start the context's imports together
        time.sleep(0.005)
    print(json.dumps(describe_file(folder / "context.py", folder)))
""")

CONTEXT = textwrap.dedent("""
    from damnit_ctx import Variable
    from extra.components import XGM

    @Variable(title="Has XGM")
    def has_xgm(run):
        return XGM is not None
""")


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """(HOME without caches, a DAMNIT folder whose context imports ``extra``, the
    environment of processes in that HOME)."""
    home = tmp_path / "home"
    home.mkdir()
    folder = tmp_path / "amore"
    folder.mkdir()
    (folder / "context.py").write_text(CONTEXT)
    monkeypatch.setenv("HOME", str(home))
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    return home, folder, env


def describing(folder, env, i):
    return subprocess.Popen([sys.executable, "-c", DESCRIBE, str(folder), str(i)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("attempt", range(4))
def test_processes_starting_together_in_a_fresh_home_all_load_the_context(fresh_home, attempt):
    home, folder, env = fresh_home
    procs = [describing(folder, env, i) for i in range(8)]
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    (folder / "go").touch()
    results = [p.communicate(timeout=300) for p in procs]
    described = [json.loads(out) for out, _ in results]
    problems = [d.get("problems") for d in described if not d.get("ok")]
    assert problems == []
    assert all([v["name"] for v in d["variables"]] == ["has_xgm"] for d in described)
    assert (home / ".cache" / "pint").is_dir()


def test_the_first_import_waits_for_another_process_holding_the_host_lock(fresh_home):
    from filelock import FileLock

    from damnit_dagster.execution.science_import import import_lock_path

    home, folder, env = fresh_home
    (folder / "go").touch()
    lock_path = import_lock_path()
    lock_path.parent.mkdir(parents=True)
    with FileLock(lock_path):
        proc = describing(folder, env, 0)
        while not (folder / "ready-0").exists() and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(3)
        assert proc.poll() is None          # waiting for the lock, not importing
        assert not (home / ".cache" / "pint").exists()
    out, err = proc.communicate(timeout=120)
    assert json.loads(out)["ok"], err
    assert (home / ".cache" / "pint").is_dir()


def test_a_lock_that_cannot_be_taken_does_not_stop_the_context_loading(fresh_home):
    """The lock is a precaution: where it cannot be taken, the context loads without it."""
    from damnit_dagster.execution.science_import import import_lock_path

    home, folder, env = fresh_home
    import_lock_path().parent.parent.mkdir(parents=True)
    import_lock_path().parent.write_text("not a folder")
    (folder / "go").touch()
    out, err = describing(folder, env, 0).communicate(timeout=120)
    assert json.loads(out)["ok"], err
    assert "without the lock" in err
