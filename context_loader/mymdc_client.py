"""A real HTTP client of the MyMDC API for ``mymdc#`` arguments.

It makes the same calls as DAMNIT 0.4.0 (through ``extra_proposal``), with the proposal's
API token from ``<proposal>/usr/mymdc-credentials.yml`` (keys ``token`` and ``server``)::

    GET {server}/api/mymdc/proposals/by_number/{P}/runs/{R}
        -> {"runs": [{"id", "sample_id", "experiment_id"}]}
    GET {server}/api/mymdc/samples/{sample_id}               -> {"name"}        (sample_name)
    GET {server}/api/mymdc/experiments/{experiment_id}       -> {"name"}        (run_type)
    GET {server}/api/mymdc/runs/{id}                         -> {"techniques"}  (techniques)

each with the header ``X-API-key: <token>``. Any failure to get an answer raises
:class:`MyMdcError` naming MyMDC and the URL, so only the variables that asked fail.
``requests`` and ``yaml`` are imported when first needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

CREDENTIALS_FILE = "usr/mymdc-credentials.yml"


class MyMdcError(RuntimeError):
    """MyMDC gave no usable answer (unreachable, timed out, HTTP error, unexpected reply)."""


class MyMdcCredentialsError(MyMdcError):
    """The proposal's MyMDC credentials file is missing or malformed."""


class MyMdcHttpClient:
    """Run metadata from MyMDC at ``server`` (e.g. ``https://in.xfel.eu/metadata``).

    Implements :class:`context_loader.mymdc.MyMdcClient`. Answers are cached per run.
    """

    def __init__(self, server: str, token: str, *, timeout: float = 10):
        self.base_url = server.rstrip("/") + "/api/mymdc/"
        self.timeout = timeout
        self._token = token
        self._session = None
        self._cache: dict[tuple, Any] = {}

    def __repr__(self):
        return f"MyMdcHttpClient({self.base_url!r})"

    @classmethod
    def from_proposal_dir(cls, path, *, timeout: float = 10) -> MyMdcHttpClient:
        """The client configured by ``<path>/usr/mymdc-credentials.yml``."""
        file = Path(path) / CREDENTIALS_FILE
        try:
            text = file.read_text()
        except FileNotFoundError:
            raise MyMdcCredentialsError(
                f"no MyMDC credentials: {file} does not exist") from None
        except OSError as e:
            raise MyMdcCredentialsError(f"cannot read MyMDC credentials {file}: {e}") from e
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise MyMdcCredentialsError(
                f"MyMDC credentials {file} are not valid YAML: {e}") from None
        if not isinstance(doc, dict):
            doc = {}
        bad = [key for key in ("token", "server") if not isinstance(doc.get(key), str)
               or not doc[key].strip()]
        if bad:
            raise MyMdcCredentialsError(
                f"MyMDC credentials {file} are malformed: "
                f"{' and '.join(repr(k) for k in bad)} missing (need 'token' and 'server' "
                f"as text)")
        return cls(doc["server"].strip(), doc["token"].strip(), timeout=timeout)

    @classmethod
    def for_proposal(cls, proposal: int, *, timeout: float = 10) -> MyMdcHttpClient:
        """The client of a proposal found under the data root (``EXTRA_DATA_DATA_ROOT``)."""
        from extra_data.read_machinery import find_proposal

        return cls.from_proposal_dir(find_proposal(int(proposal)), timeout=timeout)

    def _get(self, relative_url: str) -> Any:
        import requests

        if self._session is None:
            self._session = requests.Session()
            self._session.headers.update({
                "X-API-key": self._token,
                "Accept": "application/json; version=1",
            })
        url = self.base_url + relative_url
        try:
            resp = self._session.get(url, timeout=self.timeout)
        except requests.Timeout:
            raise MyMdcError(
                f"MyMDC did not answer within {self.timeout:g} s: GET {url}") from None
        except requests.RequestException as e:
            raise MyMdcError(f"MyMDC is unreachable: GET {url} failed: {e}") from None
        if resp.status_code >= 400:
            detail = resp.text.strip()[:300]
            hint = " (is the token in the credentials file valid?)" \
                if resp.status_code in (401, 403) else ""
            raise MyMdcError(
                f"MyMDC answered HTTP {resp.status_code} {resp.reason} to GET {url}{hint}"
                + (f": {detail}" if detail else ""))
        try:
            return resp.json()
        except ValueError:
            raise MyMdcError(f"MyMDC sent an answer that is not JSON to GET {url}") from None

    def _field(self, relative_url: str, key: str) -> Any:
        doc = self._get(relative_url)
        if not isinstance(doc, dict) or key not in doc:
            raise MyMdcError(f"MyMDC's answer to GET {self.base_url + relative_url} "
                             f"has no {key!r}")
        return doc[key]

    def _cached(self, key: tuple, fetch) -> Any:
        if key not in self._cache:
            self._cache[key] = fetch()
        return self._cache[key]

    def _run_info(self, proposal: int, run: int) -> dict:
        def fetch():
            url = f"proposals/by_number/{int(proposal)}/runs/{int(run)}"
            runs = self._field(url, "runs")
            if not runs:
                raise MyMdcError(f"MyMDC knows no run {run} of proposal {proposal} "
                                 f"(GET {self.base_url + url})")
            return runs[0]
        return self._cached(("run", proposal, run), fetch)

    def _run_ref(self, proposal: int, run: int, key: str, what: str):
        value = self._run_info(proposal, run).get(key)
        if value is None:
            raise MyMdcError(f"MyMDC has no {what} for run {run} of proposal {proposal}")
        return value

    def sample_name(self, proposal: int, run: int) -> str:
        """The name of the run's sample."""
        sample_id = self._run_ref(proposal, run, "sample_id", "sample")
        return self._cached(("sample", sample_id),
                            lambda: self._field(f"samples/{sample_id}", "name"))

    def run_type(self, proposal: int, run: int) -> str:
        """The run type: the name of the run's MyMDC experiment."""
        experiment_id = self._run_ref(proposal, run, "experiment_id", "experiment")
        return self._cached(("experiment", experiment_id),
                            lambda: self._field(f"experiments/{experiment_id}", "name"))

    def techniques(self, proposal: int, run: int) -> list[dict]:
        """The run's techniques, each a dict (``identifier``, ``name``, ...)."""
        run_id = self._run_ref(proposal, run, "id", "run id")
        return self._cached(("techniques", run_id),
                            lambda: self._field(f"runs/{run_id}", "techniques"))
