"""What the backend's daemon sets up before Dagster's loops start."""
import shutil

import dagster as dg

from damnit_dagster.plugins.daemon import start_retry_cursors
from support.paths import REPO

KEYS = {"EVENT_LOG_CONSUMER_CURSOR-PIPELINE_FAILURE", "EVENT_LOG_CONSUMER_CURSOR-PIPELINE_SUCCESS"}


@dg.asset
def answer():
    return 42


def test_run_retries_read_failures_from_the_first_start_on(tmp_path, monkeypatch):
    """The retry daemon's cursors exist before any run, at the end of the event log, and a
    later start leaves them where the daemon moved them: a backend killed in its first
    seconds still retries the run it was killed in (tests/end_to_end/test_live_processing)."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert instance.run_retries_enabled
        assert dg.materialize([answer], instance=instance).success
        top = str(instance.event_log_storage.get_maximum_record_id())
    with dg.DagsterInstance.get() as instance:
        start_retry_cursors(instance)
        cursors = instance.daemon_cursor_storage.get_cursor_values(KEYS)
        assert cursors == {k: top for k in KEYS}
        instance.daemon_cursor_storage.set_cursor_values(
            {"EVENT_LOG_CONSUMER_CURSOR-PIPELINE_FAILURE": "1"})   # the daemon moved it
        assert dg.materialize([answer], instance=instance).success
    with dg.DagsterInstance.get() as instance:
        start_retry_cursors(instance)
        cursors = instance.daemon_cursor_storage.get_cursor_values(KEYS)
    assert cursors == {"EVENT_LOG_CONSUMER_CURSOR-PIPELINE_FAILURE": "1",
                       "EVENT_LOG_CONSUMER_CURSOR-PIPELINE_SUCCESS": top}
