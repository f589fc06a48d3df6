"""Fixtures for every test folder: one realistic mock proposal for the whole session, new
DAMNIT folders with a given context and settings, a Kafka broker. Helpers shared by the
tests are in the ``support`` package (tests/support)."""
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# Headless plotting before anything imports matplotlib.
os.environ["MPLBACKEND"] = "Agg"


@dataclass(frozen=True)
class MockProposal:
    root: Path               # data root (EXTRA_DATA_DATA_ROOT / XFEL_DATA_ROOT)
    proposal: int
    path: Path               # the proposal directory
    runs: list
    scan_runs: list
    runs_without_proc: list


@pytest.fixture(scope="session")
def mock_proposal(tmp_path_factory):
    """Proposal 1234 with runs 1-4 (run 3 a scan, run 4 without proc) under a session
    tmp dir; EXTRA_DATA_DATA_ROOT and XFEL_DATA_ROOT point at it for the session."""
    from damnit_dagster.ops.mockdata import make_proposal

    root = tmp_path_factory.mktemp("xfel-data")
    runs, scan_runs, no_proc = [1, 2, 3, 4], [3], [4]
    path = make_proposal(root, 1234, runs, scan_runs=scan_runs, runs_without_proc=no_proc)
    saved = {k: os.environ.get(k) for k in ("EXTRA_DATA_DATA_ROOT", "XFEL_DATA_ROOT")}
    os.environ.update({k: str(root) for k in saved})
    yield MockProposal(root=root, proposal=1234, path=path, runs=runs,
                       scan_runs=scan_runs, runs_without_proc=no_proc)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def kafka_broker(tmp_path):
    """A real Kafka broker (nafka) on 127.0.0.1, in its own process; its ``host:port``."""
    from support.kafka_broker import running_broker

    with running_broker(tmp_path) as address:
        yield address


@pytest.fixture
def damnit_folder(tmp_path):
    """Factory of new DAMNIT folders under the test's ``tmp_path``:
    ``damnit_folder(context=None, *, proposal=1234, name="amore", **settings)`` gives the
    :class:`DamnitPaths` of ``tmp_path / name`` (see :func:`support.folders.make_damnit_folder`).
    """
    from support.folders import make_damnit_folder

    def make(context=None, *, proposal: int = 1234, name: str = "amore", **settings):
        return make_damnit_folder(tmp_path / name, context, proposal=proposal, **settings)

    return make
