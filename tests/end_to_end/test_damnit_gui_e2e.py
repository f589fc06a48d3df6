"""DAMNIT 0.4.0's own GUI, headless, stays live on our backend: its main window, open on a
folder, shows a run our backend processes after it opened (values and processing status)
from the messages on a real broker (nafka on 127.0.0.1), without being reopened."""
import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import PyQt6.QtWebEngineWidgets  # noqa: E402, F401  (before any QApplication, as DAMNIT's GUI)
import pytest  # noqa: E402

from damnit_dagster.events.inbox import EventInbox  # noqa: E402
from damnit_dagster.execution.process_run import evaluate_and_store  # noqa: E402
from damnit_dagster.ops.mockdata import make_proposal  # noqa: E402
from damnit_dagster.plugins.home import inbox_path  # noqa: E402
from support.backend import running_backend  # noqa: E402
from support.folders import make_damnit_folder  # noqa: E402
from support.spec_examples import FIRST_EXAMPLE  # noqa: E402

PROPOSAL = 4569
pytestmark = pytest.mark.slow


def import_damnit_gui(monkeypatch):
    """``damnit.api.Damnit``, DAMNIT's ``MainWindow`` and how its table shows numbers,
    importing DAMNIT's own
    ``damnit_ctx`` as ``damnit gui`` does (this process has ours until the test ends)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n in ("damnit_ctx", "ctxrunner", "damnit.context")
                 or n.startswith(("damnit.gui", "damnit.backend"))]:
        monkeypatch.delitem(sys.modules, name)
    from damnit.api import Damnit
    from damnit.gui.main_window import MainWindow
    from damnit.gui.table import prettify_notation

    return Damnit, MainWindow, prettify_notation


def cell(table, run, column):
    """What the run table shows for ``run`` in ``column`` (None: no such row or cell)."""
    try:
        item = table.item(table.find_row(PROPOSAL, run), table.find_column(column))
    except KeyError:
        return None
    return None if item is None else item.data(0)


def listening(qtbot, window, broker):
    """Wait until the GUI's consumer receives messages: it starts at the topic's end, once
    it has asked the broker where that is, so a message sent before then is never shown.
    A ``processing_finished`` for a processing id nobody knows is a no-op for the GUI."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[broker])
    topic = f"test.damnit.db-{window.db_id}"
    probe = json.dumps({"msg_kind": "processing_finished",
                        "data": {"processing_id": "test-probe"}}).encode()
    try:
        for _ in range(60):
            producer.send(topic, probe)
            producer.flush()
            try:
                qtbot.waitUntil(lambda: window._received_update, timeout=1000)
                return
            except qtbot.TimeoutError:
                pass
    finally:
        producer.close()
    pytest.fail("DAMNIT's GUI received none of 60 messages sent to its topic")


def test_damnits_gui_shows_a_new_run_and_its_status(tmp_path, kafka_broker, mock_proposal,
                                                     monkeypatch, qtbot):
    monkeypatch.setenv("AMORE_BROKER", kafka_broker)        # where DAMNIT's GUI listens
    monkeypatch.setenv("HOME", str(tmp_path / "home-dir"))  # the GUI's own settings
    make_proposal(mock_proposal.root, PROPOSAL, [1, 2], ntrains=20, runs_without_proc=())
    folder = make_damnit_folder(tmp_path / "amore", FIRST_EXAMPLE, proposal=PROPOSAL,
                                gui_brokers=kafka_broker).root
    evaluate_and_store(folder, PROPOSAL, 1, folder / "context.py", ["xgm_intensity", "pulses"],
                       "raw")
    Damnit, MainWindow, shown = import_damnit_gui(monkeypatch)

    with running_backend(folder, tmp_path / "dagster") as backend:
        backend.wait_for_sensor()
        window = MainWindow(folder, background_activity=False)
        qtbot.addWidget(window)
        table = window.table
        assert cell(table, 1, "pulses") is not None and cell(table, 2, "pulses") is None
        listening(qtbot, window, kafka_broker)

        headers = []
        table.processing_jobs.run_jobs_changed.connect(
            lambda proposal, run, jobs: headers.append(
                table.verticalHeaderItem(table.find_row(proposal, run)).text()))
        EventInbox(inbox_path()).add("migration", PROPOSAL, 2)
        try:
            qtbot.waitUntil(lambda: cell(table, 2, "pulses") is not None and headers
                            and headers[-1] == "2", timeout=90000)
        except qtbot.TimeoutError:
            pytest.fail(f"the GUI did not show run 2 processed; row headers seen {headers}, "
                        f"cell {cell(table, 2, 'pulses')!r}\n--- daemon log ---\n"
                        f"{backend.log()[-4000:]}")

    stored = Damnit(folder)[2]
    assert cell(table, 2, "pulses") == shown(stored["pulses"].summary())
    assert cell(table, 2, "xgm_intensity") is not None
    assert headers[:2] == ["2 ⋮", "2 ⚙️"], headers   # queued, then processing
    assert table.verticalHeaderItem(table.find_row(PROPOSAL, 2)).text() == "2"
    window.close()
