"""What a runner that died leaves is completed into a fragment: the variables it finished,
and an error naming what stopped it for each of the others."""
import subprocess
import sys
import textwrap

import h5py

from context_loader.progress import partial_path
from damnit_dagster.execution.evaluator import keep_finished

REPORT = {"proposal": 1234, "run": 5, "data_opened": "raw", "start_time": 1.0,
          "proc_missing": [], "partial": True, "order": ["a", "hidden", "b", "c"],
          "done": ["a", "hidden"], "transient": ["hidden"],
          "variables": {"a": {"status": "ok", "error": None, "error_cls": None,
                              "duration": 0.1}}}


def died_after_writing_a(fragment):
    """A process that wrote variable ``a`` to ``fragment`` and died before closing it."""
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from context_loader.cells import Cell
        from context_loader.fragment import FragmentWriter
        writer = FragmentWriter({str(fragment)!r})
        writer.add("a", cell=Cell(42))
        os._exit(0)
    """)], check=True)


def errors_in(fragment):
    with h5py.File(fragment) as f:
        return {name: (f[f".errors/{name}"][()].decode(), f[f".errors/{name}"].attrs["type"])
                for name in f[".errors"]}


def test_the_variables_written_before_the_death_are_kept(tmp_path):
    fragment = tmp_path / "p1234_r5.frag.h5"
    died_after_writing_a(fragment)
    report = keep_finished(fragment, dict(REPORT, variables=dict(REPORT["variables"])),
                           "timed out after 00:00:20 (the slurm_time limit)", TimeoutError)

    with h5py.File(fragment) as f:
        assert f["a/data"][()] == 42
    assert errors_in(fragment) == {
        "b": ("timed out after 00:00:20 (the slurm_time limit) while computing this variable",
              "TimeoutError"),
        "c": ("not computed: timed out after 00:00:20 (the slurm_time limit) while "
              "computing 'b'", "TimeoutError")}
    assert report["variables"]["a"]["status"] == "ok"
    assert report["variables"]["c"]["error_cls"] == "TimeoutError"
    assert "partial" not in report and not partial_path(fragment).exists()


def test_an_unreadable_partial_file_gives_every_variable_the_error(tmp_path):
    fragment = tmp_path / "p1234_r5.frag.h5"
    partial_path(fragment).write_bytes(b"half an HDF5 file")
    report = keep_finished(fragment, dict(REPORT, variables=dict(REPORT["variables"])),
                           "the process evaluating run 5 was killed by signal 9 (SIGKILL)")

    lost = "the process evaluating run 5 was killed by signal 9 (SIGKILL); its results are lost"
    assert errors_in(fragment) == {n: (lost, "ChildProcessError") for n in ("a", "b", "c")}
    assert set(report["variables"]) == {"a", "b", "c"}


def test_a_runner_that_never_started_evaluating_leaves_nothing_to_keep(tmp_path):
    fragment = tmp_path / "p1234_r5.frag.h5"
    assert keep_finished(fragment, {"proposal": 1234, "run": 5, "error": "cannot open run 5"},
                         "exited with status 2") is None
    assert keep_finished(fragment, None, "killed") is None
