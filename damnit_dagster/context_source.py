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
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .execution.environment import runner_env
from .storage.layout import DamnitPaths

log = logging.getLogger(__name__)

#: Seconds allowed for describing a context file in a subprocess.
DESCRIBE_TIMEOUT = 300


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


def file_sha(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it does not exist."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def state_dir_for(damnit_dir, home=None) -> Path:
    """Where the state of one DAMNIT folder lives (``$DAGSTER_HOME/context_state/<id>``)."""
    from .instance import dagster_home

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


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def describe_file(path: Path, damnit_dir: Path, context_python: str | None = None) -> dict:
    """``{"ok": True, "variables": [...]}`` or ``{"ok": False, "problems": [...]}``.

    With ``context_python`` the file is loaded by ``python -m context_loader describe``
    in that interpreter (cwd = the DAMNIT folder); otherwise in this process, with every
    exception of the user's code caught. Either way the modules in the DAMNIT folder are
    importable from the file, as in DAMNIT.
    """
    if context_python:
        return _describe_subprocess(path, damnit_dir, context_python)
    from context_loader.contextfile import ContextFile
    from context_loader.errors import ContextFileErrors

    try:
        ctx = ContextFile.from_path(path, damnit_dir)
        return {"ok": True, "variables": ctx.describe()}
    except ContextFileErrors as e:
        return {"ok": False, "problems": list(e.problems)}
    except (Exception, SystemExit, KeyboardInterrupt) as e:  # the user's top-level code
        return {"ok": False, "problems": [f"{path}: {type(e).__name__}: {e}"]}


def _describe_subprocess(path: Path, damnit_dir: Path, context_python: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="damnit-describe-") as tmp:
        out = Path(tmp) / "describe.json"
        cmd = [context_python, "-m", "context_loader", "describe", str(path), "--out", str(out)]
        try:
            proc = subprocess.run(cmd, cwd=damnit_dir, env=runner_env(), capture_output=True,
                                  text=True, timeout=DESCRIBE_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"ok": False, "problems": [f"{path}: could not run {context_python}: {e}"]}
        result = _read_json(out)
        if result is None:
            tail = (proc.stderr or proc.stdout).strip()[-2000:]
            return {"ok": False, "problems": [
                f"{path}: describing with {context_python} failed (exit {proc.returncode}): {tail}"]}
        return result


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
    good = _read_json(good_desc)
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
    known_error = _read_json(error_file)
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
