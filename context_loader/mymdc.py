"""Where ``mymdc#`` arguments come from: a pluggable client for the MyMDC metadata portal.

A Variable argument annotated ``"mymdc#sample_name"``, ``"mymdc#run_type"`` or
``"mymdc#techniques"`` receives that field of the run being processed. Evaluation asks a
:class:`MyMdcClient` for it; without one configured, each such variable fails with
"no MyMDC client configured" and the others are unaffected.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: The fields a context file may ask for, as ``mymdc#<field>``.
MYMDC_FIELDS = ("run_type", "sample_name", "techniques")


@runtime_checkable
class MyMdcClient(Protocol):
    """Answers the run metadata that ``mymdc#`` arguments ask for."""

    def sample_name(self, proposal: int, run: int) -> str:
        """The name of the sample of the run."""

    def run_type(self, proposal: int, run: int) -> str:
        """The run type (MyMDC's experiment name) of the run."""

    def techniques(self, proposal: int, run: int) -> list[dict]:
        """The techniques of the run, each a dict (``identifier``, ``name``, ``url``, ...)."""


class NoMyMdcClient:
    """The default client: every field fails clearly, as no portal was configured."""

    def _fail(self, proposal, run):
        raise RuntimeError("no MyMDC client configured")

    sample_name = run_type = techniques = _fail


class LazyMyMdcClient:
    """Builds a client with ``factory()`` when a field is first asked for, so a run whose
    variables need no ``mymdc#`` never touches MyMDC or its credentials; if building
    fails, each field raises that error (only the variables asking fail)."""

    def __init__(self, factory):
        self._factory = factory
        self._client = None

    def _get(self):
        if self._client is None:
            self._client = self._factory()
        return self._client

    def sample_name(self, proposal, run):
        return self._get().sample_name(proposal, run)

    def run_type(self, proposal, run):
        return self._get().run_type(proposal, run)

    def techniques(self, proposal, run):
        return self._get().techniques(proposal, run)


def proposal_client(proposal: int) -> LazyMyMdcClient:
    """The real MyMDC client of a proposal (its ``usr/mymdc-credentials.yml``), built on
    first use."""
    def build():
        from .mymdc_client import MyMdcHttpClient
        return MyMdcHttpClient.for_proposal(proposal)
    return LazyMyMdcClient(build)


def fetch_field(client: MyMdcClient, field: str, proposal: int, run: int) -> Any:
    """Ask ``client`` for one of :data:`MYMDC_FIELDS` of a run."""
    if field not in MYMDC_FIELDS:
        raise ValueError(f"invalid MyMdC field: {field!r}")
    return getattr(client, field)(proposal, run)
