"""Reload the code location when ``context.py`` changes.

Dagster does not watch files: :func:`watch` polls the context file's hash, loads a new
version once (recording it as the last good one, or recording its errors, see
:mod:`.context_source`) and then asks the webserver to reload the location through
GraphQL (``reloadRepositoryLocation``). A broken file is still reloaded: the location
then serves the last good variables and shows the error on the ``context.py`` asset.
"""
from __future__ import annotations

import logging
import threading

import requests

from damnit_dagster.defs.context_source import load_context
from damnit_dagster.execution.describe import file_sha
from damnit_dagster.storage.layout import DamnitPaths

log = logging.getLogger(__name__)

_RELOAD = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry {
      locationOrLoadError { __typename ... on PythonError { message } }
    }
    ... on PythonError { message }
    ... on RepositoryLocationNotFound { message }
    ... on UnauthorizedError { message }
  }
}
"""


class ReloadError(RuntimeError):
    """The webserver refused or failed to reload the location."""


def reload_location(url: str, location: str, timeout: float = 60) -> None:
    """Ask the Dagster webserver at ``url`` to reload code location ``location``."""
    response = requests.post(f"{url.rstrip('/')}/graphql", timeout=timeout,
                             json={"query": _RELOAD, "variables": {"name": location}})
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise ReloadError(f"reloading {location!r}: {body['errors']}")
    result = body["data"]["reloadRepositoryLocation"]
    error = result.get("message") or (result.get("locationOrLoadError") or {}).get("message")
    if result["__typename"] != "WorkspaceLocationEntry" or error:
        raise ReloadError(f"reloading {location!r}: {result['__typename']}: {error}")


def check_once(damnit_dir, last_sha: str | None, on_change, *, state_dir=None) -> str | None:
    """If ``context.py`` no longer has hash ``last_sha``: load it (recording last good or
    errors), call ``on_change(snapshot)`` and return the new hash; else return ``last_sha``."""
    sha = file_sha(DamnitPaths(damnit_dir).context_file)
    if sha == last_sha:
        return last_sha
    snapshot = load_context(damnit_dir, state_dir=state_dir)
    if snapshot.error:
        log.error("context.py changed and has errors; the last good version stays served:\n%s",
                  snapshot.error)
    else:
        log.info("context.py changed: %d variables", len(snapshot.variables))
    on_change(snapshot)
    return sha


def watch(damnit_dir, url: str, location: str, *, interval: float = 2.0,
          stop: threading.Event | None = None, state_dir=None) -> None:
    """Reload ``location`` at ``url`` whenever ``context.py`` changes, until ``stop`` is set."""
    stop = stop or threading.Event()
    sha = file_sha(DamnitPaths(damnit_dir).context_file)

    def on_change(_snapshot):
        try:
            reload_location(url, location)
            log.info("Reloaded code location %s", location)
        except (requests.RequestException, ReloadError) as e:
            log.error("Could not reload code location %s: %s", location, e)

    while not stop.wait(interval):
        sha = check_once(damnit_dir, sha, on_change, state_dir=state_dir)
