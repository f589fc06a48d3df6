"""Files that dead evaluations left in extracted_data/ are removed; a live writer's, or
another host's, never are."""
import socket
import subprocess

from damnit_dagster.storage.layout import DamnitPaths
from damnit_dagster.storage.leftovers import new_fragment, remove_stale


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_sweep_of_every_run_removes_only_what_dead_processes_left(tmp_path):
    paths = DamnitPaths(tmp_path)
    paths.make_dirs()
    host = socket.gethostname().replace(".", "_").replace("@", "_")
    dead = dead_pid()
    left = [paths.extracted_dir / f"p1234_r{run}.{dead}@{host}.x1.fragment.h5" for run in (3, 7)]
    left.append(paths.extracted_dir / f".p1234_r7.{dead}@{host}.x2.fragment.h5.writing")
    live = new_fragment(paths, 1234, 3)                       # this process owns it
    remote = paths.extracted_dir / f"p1234_r3.{dead}@elsewhere.x3.fragment.h5"
    other_proposal = paths.extracted_dir / f"p999_r3.{dead}@{host}.x4.fragment.h5"
    run_file = paths.run_file(1234, 3)
    for path in (*left, remote, other_proposal, run_file):
        path.write_bytes(b"")

    assert sorted(remove_stale(paths, 1234)) == sorted(left)
    assert sorted(p.name for p in paths.extracted_dir.iterdir()) == sorted(
        p.name for p in (live, remote, other_proposal, run_file))
