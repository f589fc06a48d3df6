"""The files of an evaluation besides its fragment: the report, written atomically, the
progress log from which a runner that died is read back, and the name of a fragment
still being written. Light on purpose: the process that stores results (a command, a
Dagster step) reads these for every run without importing the runner's scientific stack.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def progress_path(report_path) -> Path:
    """Where the runner (``context_loader.runner.execute``) logs its progress while it
    writes ``report_path``."""
    return Path(str(report_path) + ".progress")


def append_progress(progress, line: dict) -> None:
    """Append one ``line`` to an open progress log, flushed at once."""
    progress.write(json.dumps(line) + "\n")
    progress.flush()


def read_progress(report_path) -> dict | None:
    """The report of a runner that did not finish, from its progress log:
    ``"partial": true``, the evaluation ``"order"``, the names ``"done"`` and the
    ``"transient"`` ones besides the usual fields. None when there is no log (it had not
    started to evaluate)."""
    try:
        lines = progress_path(report_path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    report = None
    for text in lines:
        try:
            line = json.loads(text)
        except ValueError:   # cut short by the process's death
            break
        if report is None:
            report = {**line, "partial": True, "done": []}
        elif "done" in line:
            report["done"].append(line["done"])
            if line["entry"] is not None:
                report["variables"][line["done"]] = line["entry"]
        else:
            report.update(line)
    return report


def write_json(path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a reader sees the old or new file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def partial_path(path) -> Path:
    """Where the fragment ``path`` is written until it is complete: ``.<name>.writing``
    in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.writing")
