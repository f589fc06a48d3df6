"""``damnit-dagster serve``: start a folder's backend under Supervisor and report success
only once it is up, or why it is not, in one line."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from damnit_dagster.ops import supervisor
from damnit_dagster.ops.backend import backend_running, last_line, read_status


class BackendDidNotStart(RuntimeError):
    """The backend under Supervisor did not come up; the message says why."""


def _reason_in_log(damnit_dir: Path) -> str:
    """Why the program stopped, from the end of ``amore.log``."""
    log = damnit_dir / supervisor.PROGRAM_LOG
    try:
        lines = log.read_text(errors="replace").splitlines()[-50:]
    except FileNotFoundError:
        return "it wrote nothing"
    for line in reversed(lines):
        if "cannot start" in line:
            return line.split("cannot start: ", 1)[-1]
    return last_line(log) or "it wrote nothing"


def serve_folder(damnit_dir, home: Path, port: int | None, *, env: dict,
                 timeout: float = 300) -> str:
    """Make sure the backend of ``damnit_dir`` runs under Supervisor and is ready; returns
    its Dagster UI address. Raises :class:`BackendDidNotStart` (or
    :class:`~.supervisor.SupervisorError`) naming the reason."""
    from damnit_dagster.ops.backend import free_port

    damnit_dir = Path(damnit_dir).absolute()
    state, _ = supervisor.program_state(damnit_dir)
    if state != "RUNNING" and backend_running(damnit_dir):
        status = read_status(home)
        raise BackendDidNotStart(
            f"a backend of {damnit_dir} already runs outside Supervisor (pid "
            f"{status.get('pid')}, e.g. 'damnit-dagster listen'): stop it first")
    command = [str(Path(sys.executable).parent / "damnit-dagster"), "--dir", str(damnit_dir),
               "listen", "--port", str(port or free_port())]
    try:
        supervisor.start(damnit_dir, command, env=env, timeout=60)
    except supervisor.SupervisorError:
        raise BackendDidNotStart(f"the backend of {damnit_dir} did not start: "
                                 f"{_reason_in_log(damnit_dir)}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, pid = supervisor.program_state(damnit_dir)
        status = read_status(home)
        if state not in ("RUNNING", "STARTING", "BACKOFF"):
            raise BackendDidNotStart(f"the backend of {damnit_dir} did not start: "
                                     f"{_reason_in_log(damnit_dir)}")
        if pid is not None and status.get("pid") == pid:
            if status.get("state") == "ready":
                return status["url"]
            if status.get("state") == "failed":
                raise BackendDidNotStart(f"the backend of {damnit_dir} did not start: "
                                         f"{status.get('reason')}")
        time.sleep(0.3)
    raise BackendDidNotStart(f"the backend of {damnit_dir} was not ready after {timeout:.0f} s "
                             f"(see {damnit_dir / supervisor.PROGRAM_LOG})")
