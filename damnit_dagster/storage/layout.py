"""The DAMNIT folder layout (``usr/Shared/amore`` of a proposal) and its permissions.

::

    context.py                        the context file
    runs.sqlite                       the run table (DAMNIT schema v4)
    extracted_data/p{P}_r{R}.h5       one HDF5 file per run (full data, summaries, errors)
    extracted_data/p{P}_r{R}.h5.lock  lock taken while that file is rewritten
    process_logs/r{R}-p{P}.out        the processing log of a run

Proposal folders are shared by the whole experiment team, so, like DAMNIT, every file we
create is made ``0o666`` and every directory ``0o777`` (only when we own it: ``chmod`` on
somebody else's file would fail).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FILE_MODE = 0o666
DIR_MODE = 0o777

CONTEXT_FILE = "context.py"
DB_FILE = "runs.sqlite"
EXTRACTED_DIR = "extracted_data"
LOGS_DIR = "process_logs"


def share(path: Path, mode: int = FILE_MODE) -> None:
    """Give ``path`` the shared ``mode`` if this process owns it (DAMNIT's rule)."""
    st = os.stat(path)
    if st.st_uid == os.getuid() and (st.st_mode & 0o7777) != mode:
        os.chmod(path, mode)


def make_shared_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it ``0o777``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    share(path, DIR_MODE)
    return path


@dataclass(frozen=True)
class DamnitPaths:
    """Paths inside one DAMNIT folder."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).absolute())

    @property
    def context_file(self) -> Path:
        return self.root / CONTEXT_FILE

    @property
    def db_file(self) -> Path:
        return self.root / DB_FILE

    @property
    def extracted_dir(self) -> Path:
        return self.root / EXTRACTED_DIR

    @property
    def logs_dir(self) -> Path:
        return self.root / LOGS_DIR

    def run_file(self, proposal: int, run: int) -> Path:
        """``extracted_data/p{P}_r{R}.h5``: everything stored for one run."""
        return self.extracted_dir / f"p{int(proposal)}_r{int(run)}.h5"

    def run_file_pattern(self, proposal: int) -> str:
        """:meth:`run_file` of every run, with ``{run}`` for the run number."""
        return str(self.extracted_dir / f"p{int(proposal)}_r{{run}}.h5")

    def run_lock(self, proposal: int, run: int) -> Path:
        """The lock file held while a run's HDF5 file and DB rows are rewritten."""
        return self.extracted_dir / f"p{int(proposal)}_r{int(run)}.h5.lock"

    def log_file(self, proposal: int, run: int) -> Path:
        """``process_logs/r{R}-p{P}.out``: appended by every job that processes the run."""
        return self.logs_dir / f"r{int(run)}-p{int(proposal)}.out"

    def make_dirs(self) -> None:
        """Create the folder, ``extracted_data/`` and ``process_logs/`` (all ``0o777``)."""
        for d in (self.root, self.extracted_dir, self.logs_dir):
            make_shared_dir(d)

    def open_log(self, proposal: int, run: int, mode: str = "a"):
        """Open a run's process log for appending, creating it ``0o666``."""
        make_shared_dir(self.logs_dir)
        path = self.log_file(proposal, run)
        f = open(path, mode, encoding="utf-8", errors="replace")
        share(path)
        return f
