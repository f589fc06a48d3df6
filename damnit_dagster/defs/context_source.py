"""The context file a code location serves: the current one, or the last good one.

Loading user code must never empty the code location. :func:`load_context` describes
``context.py`` (variables, dependencies, code versions) and remembers the result by the
file's hash in a state folder on local disk (under ``DAGSTER_HOME``, never in the
proposal folder):

* ``last_good/context.py`` + ``last_good/description.json``: the newest version that loaded;
* ``last_error.json``: the problems of the newest version that did not.

A file already seen is not executed again (every Dagster run worker loads the code
location, so this keeps that cheap). When the current file is broken, the last good
version is served together with the error text, and steps evaluate that last good copy.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from damnit_dagster.events.gui_updates import GuiUpdates
from damnit_dagster.execution.describe import describe_file, file_sha, read_json
from damnit_dagster.storage.database import DamnitDB
from damnit_dagster.storage.layout import DamnitPaths

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ContextSnapshot:
    """What a code location serves for one DAMNIT folder.

    ``variables`` is ``ContextFile.describe()`` of the served version (empty if no version
    ever loaded); ``good_copy`` is the saved copy of that version; ``error`` says why the
    current ``context.py`` is not the one served (None when it is).
    """

    damnit_dir: Path
    good_copy: Path | None
    sha256: str | None
    variables: list[dict] = field(default_factory=list)
    error: str | None = None
    loaded_at: float | None = None

    @property
    def by_name(self) -> dict[str, dict]:
        return {v["name"]: v for v in self.variables}


def state_dir_for(damnit_dir, home=None) -> Path:
    """Where the state of one DAMNIT folder lives (``$DAGSTER_HOME/context_state/<id>``)."""
    from damnit_dagster.plugins.home import dagster_home

    root = Path(home) if home is not None else dagster_home()
    damnit_dir = Path(damnit_dir).absolute()
    ident = hashlib.sha256(str(damnit_dir).encode()).hexdigest()[:12]
    return root / "context_state" / f"{damnit_dir.name or 'root'}-{ident}"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_context(damnit_dir, *, context_python: str | None = None, state_dir=None,
                 on_new_version=None, describe=describe_file) -> ContextSnapshot:
    """The snapshot to serve for ``damnit_dir``; never raises for a broken context file.

    ``on_new_version(variables)`` is called once when a new version loads successfully
    (used to update the ``variables`` table of ``runs.sqlite``). A version not seen
    before is described by ``describe`` (same signature as :func:`describe_file`).
    """
    paths = DamnitPaths(damnit_dir)
    state = Path(state_dir) if state_dir is not None else state_dir_for(paths.root)
    good_copy = state / "last_good" / "context.py"
    good_desc = state / "last_good" / "description.json"
    error_file = state / "last_error.json"

    sha = file_sha(paths.context_file)
    good = read_json(good_desc)
    if good is not None and file_sha(good_copy) != good.get("sha256"):
        good = None   # copy and description out of step: do not trust them

    def serve_good(error):
        if good is None:
            return ContextSnapshot(paths.root, None, None, [], error, None)
        return ContextSnapshot(paths.root, good_copy, good["sha256"], good["variables"], error,
                               good.get("loaded_at"))

    if sha is None:
        return serve_good(f"{paths.context_file} does not exist")
    if good is not None and good["sha256"] == sha:
        return serve_good(None)
    known_error = read_json(error_file)
    if known_error is not None and known_error.get("sha256") == sha:
        return serve_good(known_error["error"])

    code = paths.context_file.read_bytes()
    result = describe(paths.context_file, paths.root, context_python)
    if result.get("ok"):
        good = {"sha256": sha, "variables": result["variables"], "loaded_at": time.time()}
        _write_atomic(good_copy, code)
        _write_atomic(good_desc, json.dumps(good).encode())
        error_file.unlink(missing_ok=True)
        log.info("Loaded %s: %d variables", paths.context_file, len(good["variables"]))
        if on_new_version is not None:
            on_new_version(good["variables"])
        return serve_good(None)

    error = "\n".join(result.get("problems") or ["unknown error"])
    _write_atomic(error_file, json.dumps({"sha256": sha, "error": error,
                                          "at": time.time()}).encode())
    log.error("The context file %s has errors; serving the last good version%s:\n%s",
              paths.context_file, "" if good else " (none exists)", error)
    return serve_good(error)


def current_matches(snapshot: ContextSnapshot) -> bool:
    """True if ``context.py`` on disk is still the version the snapshot describes."""
    return snapshot.sha256 is not None and file_sha(
        DamnitPaths(snapshot.damnit_dir).context_file) == snapshot.sha256


def evaluation_path(snapshot: ContextSnapshot) -> Path:
    """The file a step must evaluate so that it runs exactly the described code: the
    folder's ``context.py`` while unchanged (tracebacks then name it), else the last good
    copy."""
    if snapshot.good_copy is None:
        raise RuntimeError(f"No loadable context file for {snapshot.damnit_dir}: "
                           f"{snapshot.error}")
    if current_matches(snapshot):
        return DamnitPaths(snapshot.damnit_dir).context_file
    if file_sha(snapshot.good_copy) != snapshot.sha256:
        raise RuntimeError(f"{snapshot.good_copy} (the last good copy of "
                           f"{snapshot.damnit_dir}/context.py) changed or is gone; reload "
                           "the code location")
    return snapshot.good_copy


def variable_syncer(damnit_dir):
    """A loader's ``on_new_version``: store the variables in ``runs.sqlite``
    (``DamnitDB.sync_variables``) and send DAMNIT's GUI ``variable_set`` for those changed."""
    db_file = DamnitPaths(damnit_dir).db_file

    def sync(described: list[dict]) -> set[str]:
        with DamnitDB(db_file) as db:
            changed = db.sync_variables(described)
            settings = db.metameta.to_dict()
        if changed:
            GuiUpdates.for_folder(damnit_dir, settings).variables_changed(described, changed)
        return changed
    return sync
