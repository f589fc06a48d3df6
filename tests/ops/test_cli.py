"""The damnit-dagster command, driven as a user would: a subprocess in a folder."""
import os
import sqlite3
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "damnit_dagster.ops.cli"]


def damnit(*args, cwd, env=None, check=True):
    result = subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"damnit-dagster {' '.join(map(str, args))} failed:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    path = tmp_path / "amore"
    path.mkdir()
    return path


def test_proposal_in_an_empty_folder_creates_a_blank_database_and_example_context(folder):
    damnit("proposal", 1234, cwd=folder)
    assert damnit("proposal", cwd=folder).stdout.strip() == "1234"
    with sqlite3.connect(folder / "runs.sqlite") as conn:
        meta = dict(conn.execute("SELECT key, value FROM metameta"))
    assert meta["proposal"] == 1234 and meta["data_format_version"] == 4
    assert "def xgm_intensity(run)" in (folder / "context.py").read_text()
    assert oct((folder / "runs.sqlite").stat().st_mode & 0o777) == "0o666"


def test_proposal_keeps_an_existing_context_file(folder):
    (folder / "context.py").write_text("# mine\n")
    damnit("proposal", 1234, cwd=folder)
    assert (folder / "context.py").read_text() == "# mine\n"


def test_commands_outside_a_damnit_folder_say_so(folder):
    result = damnit("db-config", cwd=folder, check=False)
    assert result.returncode != 0
    assert "has no runs.sqlite" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_config_sets_shows_validates_and_deletes(folder):
    damnit("proposal", 1234, cwd=folder)
    damnit("db-config", "noncluster_mem", "50G", cwd=folder)
    damnit("db-config", "noncluster-cpus", "8", cwd=folder)   # DAMNIT's dashed form
    damnit("db-config", "slurm_reservation", "upex_001234", cwd=folder)
    assert damnit("db-config", "noncluster_mem", cwd=folder).stdout.strip() == "'50G'"
    listing = damnit("db-config", cwd=folder).stdout
    assert "noncluster_cpus='8'" in listing and "slurm_reservation='upex_001234'" in listing
    damnit("db-config", "slurm_reservation", "--delete", cwd=folder)
    assert "slurm_reservation" not in damnit("db-config", cwd=folder).stdout

    for key, value, message in [
        ("noncluster_mem", "lots", "noncluster_mem: 'lots' is not a memory size"),
        ("noncluster_cpus", "0", "noncluster_cpus: '0' must be at least 1"),
        ("context_python", "/no/such/python", "is not an executable Python interpreter"),
        ("colour", "blue", "unknown setting 'colour'"),
    ]:
        result = damnit("db-config", key, value, cwd=folder, check=False)
        assert result.returncode != 0, key
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_event_command_feeds_the_inbox(folder, tmp_path):
    damnit("proposal", 1234, cwd=folder)
    out = damnit("event", "migration", 5, "8-9", 6, cwd=folder).stdout
    assert "migration of p1234 r5" in out and "migration of p1234 r6" in out
    from damnit_dagster.events.inbox import EventInbox
    inbox = EventInbox(tmp_path / "dagster_home" / "damnit_events.sqlite")
    assert [e.run for e in inbox.after(0, 1234)] == [5, 8, 9, 6]
    bad = damnit("event", "migration", "five", cwd=folder, check=False)
    assert bad.returncode != 0 and "run five: run must be an integer" in bad.stderr


def test_help_everywhere(folder):
    for command in ([], ["proposal"], ["init"], ["db-config"], ["event"]):
        assert damnit(*command, "--help", cwd=folder).stdout.startswith("Usage:")
