"""The MyMDC HTTP client against a small real HTTP server speaking MyMDC's API."""
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import extra_data
import pytest

from context_loader.contextfile import ContextFile
from context_loader.evaluate import evaluate_run
from context_loader.mymdc import MyMdcClient
from context_loader.mymdc_client import MyMdcCredentialsError, MyMdcError, MyMdcHttpClient

TOKEN = "s3cret-token"
TECHNIQUES = [{"identifier": "PaNET01188", "name": "SAXS", "url": "http://purl.org/pan-science/PaNET/PaNET01188"}]
# What MyMDC knows about proposal 1234, keyed by the API path after /api/mymdc/
API = {
    "proposals/by_number/1234/runs/1": {"runs": [{"id": 501, "sample_id": 7, "experiment_id": 9}]},
    "proposals/by_number/1234/runs/2": {"runs": [{"id": 502, "sample_id": 8, "experiment_id": 10}]},
    "proposals/by_number/1234/runs/99": {"runs": []},
    "samples/7": {"id": 7, "name": "Lysozyme crystal"},
    "samples/8": {"id": 8, "name": "Buffer"},
    "experiments/9": {"id": 9, "name": "Sample"},
    "experiments/10": {"id": 10, "name": "Dark"},
    "runs/501": {"id": 501, "run_number": 1, "techniques": TECHNIQUES},
    "runs/502": {"id": 502, "run_number": 2, "techniques": []},
}


class FakeMyMdc:
    """MyMDC on 127.0.0.1: answers API, 401 without the token, 503 for run 3, slow run 4."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                path = self.path.removeprefix("/api/mymdc/")
                if self.headers.get("X-API-key") != TOKEN:
                    return self._send(401, {"info": "Invalid API key"})
                if path == "proposals/by_number/1234/runs/3":
                    return self._send(503, {"info": "Service Unavailable"})
                if path == "proposals/by_number/1234/runs/4":
                    time.sleep(1)
                if path not in API:
                    return self._send(404, {"info": "Not found"})
                self._send(200, API[path])

            def _send(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def mymdc():
    server = FakeMyMdc()
    yield server
    server.stop()


def write_credentials(proposal_dir, text):
    (proposal_dir / "usr").mkdir(parents=True, exist_ok=True)
    path = proposal_dir / "usr" / "mymdc-credentials.yml"
    path.write_text(text)
    return path


@pytest.fixture
def client(mymdc, tmp_path):
    write_credentials(tmp_path, f"token: {TOKEN}\nserver: {mymdc.url}\n")
    return MyMdcHttpClient.from_proposal_dir(tmp_path, timeout=0.5)


def test_the_three_fields(client, mymdc):
    assert isinstance(client, MyMdcClient)
    assert client.sample_name(1234, 1) == "Lysozyme crystal"
    assert client.run_type(1234, 1) == "Sample"
    assert client.techniques(1234, 1) == TECHNIQUES
    assert (client.sample_name(1234, 2), client.run_type(1234, 2), client.techniques(1234, 2)) \
        == ("Buffer", "Dark", [])
    # One run lookup per run, one call per answer; asking again costs nothing.
    assert mymdc.requests.count("/api/mymdc/proposals/by_number/1234/runs/1") == 1
    assert len(mymdc.requests) == 8
    client.sample_name(1234, 1)
    assert len(mymdc.requests) == 8


def test_server_down_is_a_clear_error(client, mymdc):
    mymdc.stop()
    with pytest.raises(MyMdcError, match=re.escape(
            f"MyMDC is unreachable: GET {mymdc.url}/api/mymdc/proposals/by_number/1234/runs/1")):
        client.sample_name(1234, 1)


def test_server_errors_and_timeouts_name_mymdc_and_the_url(client, mymdc):
    with pytest.raises(MyMdcError, match=re.escape(
            f"MyMDC answered HTTP 503 Service Unavailable to GET "
            f"{mymdc.url}/api/mymdc/proposals/by_number/1234/runs/3")):
        client.run_type(1234, 3)
    with pytest.raises(MyMdcError, match=re.escape(
            f"MyMDC did not answer within 0.5 s: GET "
            f"{mymdc.url}/api/mymdc/proposals/by_number/1234/runs/4")):
        client.run_type(1234, 4)
    with pytest.raises(MyMdcError, match="MyMDC knows no run 99 of proposal 1234"):
        client.techniques(1234, 99)


def test_a_wrong_token_is_reported(mymdc, tmp_path):
    write_credentials(tmp_path, f"token: not-the-token\nserver: {mymdc.url}\n")
    client = MyMdcHttpClient.from_proposal_dir(tmp_path)
    with pytest.raises(MyMdcError, match=r"HTTP 401 .*is the token in the credentials file "
                                         r"valid\?.*Invalid API key"):
        client.sample_name(1234, 1)


@pytest.mark.parametrize("text, problem", [
    ("token: abc\n", "'server' missing"),
    ("server: http://x\ntoken:\n", "'token' missing"),
    ("- just\n- a list\n", "'token' and 'server' missing"),
    ("token: [unclosed\n", "not valid YAML"),
])
def test_bad_credentials_file(tmp_path, text, problem):
    path = write_credentials(tmp_path, text)
    with pytest.raises(MyMdcCredentialsError, match=re.escape(str(path))) as info:
        MyMdcHttpClient.from_proposal_dir(tmp_path)
    assert problem in str(info.value)


def test_missing_credentials_file(tmp_path):
    with pytest.raises(MyMdcCredentialsError, match=re.escape(
            f"no MyMDC credentials: {tmp_path / 'usr' / 'mymdc-credentials.yml'} does not exist")):
        MyMdcHttpClient.from_proposal_dir(tmp_path)


CONTEXT = '''
from damnit_ctx import Variable

@Variable(title="Sample")
def sample(run, name: "mymdc#sample_name"):
    return name

@Variable(title="Run type")
def run_type(run, kind: "mymdc#run_type"):
    return kind

@Variable(title="Techniques")
def techniques(run, techs: "mymdc#techniques"):
    return ", ".join(t["name"] for t in techs)

@Variable(title="Trains")
def n_trains(run):
    return len(run.train_ids)
'''


@pytest.fixture
def proposal_client(mock_proposal, mymdc):
    """The client of the mock proposal, with credentials in its usr/ folder."""
    path = write_credentials(mock_proposal.path, f"token: {TOKEN}\nserver: {mymdc.url}\n")
    try:
        yield MyMdcHttpClient.for_proposal(mock_proposal.proposal, timeout=0.5)
    finally:
        path.unlink()


def test_context_on_a_mock_run(mock_proposal, proposal_client):
    ctx = ContextFile.from_str(CONTEXT)
    run = extra_data.open_run(mock_proposal.proposal, 1)
    results = evaluate_run(ctx, run, 1, mock_proposal.proposal, mymdc=proposal_client)
    assert results.errors == {}
    assert results.cells["sample"].data == "Lysozyme crystal"
    assert results.cells["run_type"].data == "Sample"
    assert results.cells["techniques"].data == "SAXS"
    assert results.cells["n_trains"].data == len(run.train_ids)


def test_mymdc_down_fails_only_the_mymdc_variables(mock_proposal, proposal_client, mymdc):
    mymdc.stop()
    ctx = ContextFile.from_str(CONTEXT)
    run = extra_data.open_run(mock_proposal.proposal, 2)
    results = evaluate_run(ctx, run, 2, mock_proposal.proposal, mymdc=proposal_client)
    assert set(results.errors) == {"sample", "run_type", "techniques"}
    for error in results.errors.values():
        assert isinstance(error, MyMdcError)
        assert f"MyMDC is unreachable: GET {mymdc.url}/api/mymdc/" in str(error)
    assert results.cells["n_trains"].data == len(run.train_ids)
