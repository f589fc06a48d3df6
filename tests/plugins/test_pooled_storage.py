"""The pooled SQLite run and schedule storages: Dagster's files and answers, connections
reused, safe across threads, transactions and forks."""
import os
import subprocess
import sys
import threading

import dagster as dg
import pytest
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.utils import make_new_run_id

from damnit_dagster.plugins.pooled_storage import (
    PooledSqliteRunStorage,
    PooledSqliteScheduleStorage,
)
from support.paths import REPO


@dg.asset
def answer():
    return 42


STOCK = """
run_storage:
  module: dagster._core.storage.runs
  class: SqliteRunStorage
  config: {{base_dir: {home}/history}}
event_log_storage:
  module: dagster._core.storage.event_log
  class: SqliteEventLogStorage
  config: {{base_dir: {home}/history/runs}}
schedule_storage:
  module: dagster._core.storage.schedules
  class: SqliteScheduleStorage
  config: {{base_dir: {home}/schedules}}
"""


def project_instance(tmp_path) -> dg.DagsterInstance:
    """The project's instance (``dagster_home/dagster.yaml``, pooled storages)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    return dg.DagsterInstance.from_config(str(home))


def stock_home(tmp_path, home) -> str:
    """An instance of Dagster's own SQLite storages on the files of ``home``."""
    stock = tmp_path / "stock_home"
    stock.mkdir()
    (stock / "dagster.yaml").write_text(STOCK.format(home=home))
    return str(stock)


def test_project_instance_keeps_runs_and_schedules_where_dagster_reads(tmp_path):
    """Runs and sensor state written through the pooled storages are what Dagster's stock
    storages read from another process, and the other way round."""
    with project_instance(tmp_path) as instance:
        assert isinstance(instance.run_storage, PooledSqliteRunStorage)
        assert isinstance(instance.schedule_storage, PooledSqliteScheduleStorage)
        home = instance.root_directory
        stock_root = stock_home(tmp_path, home)
        assert dg.materialize([answer], instance=instance).success
        reader = subprocess.run([sys.executable, "-c", f"""
import dagster as dg
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.utils import make_new_run_id
from dagster._core.storage.schedules import SqliteScheduleStorage
runs = SqliteRunStorage.from_local({os.path.join(home, "history")!r})
print([r.status.value for r in runs.get_runs()])
SqliteScheduleStorage.from_local({os.path.join(home, "schedules")!r})
stock = dg.DagsterInstance.from_config({stock_root!r})
assert type(stock.run_storage) is SqliteRunStorage
print(len(stock.get_runs()))
dg.materialize([dg.asset(lambda: 1, name="other")], instance=stock)
"""], capture_output=True, text=True, timeout=120)
        assert reader.returncode == 0, reader.stderr
        assert reader.stdout.split("\n")[:2] == ["['SUCCESS']", "1"]
        # the other process's run is seen at once by the open pool
        assert len(instance.get_runs()) == 2


def test_threads_and_nested_transactions_get_their_own_connections(tmp_path):
    """Concurrent readers and writers in threads, and a query inside another's transaction,
    work as with Dagster's connection per query."""
    with project_instance(tmp_path) as instance:
        errors = []

        def work():
            try:
                for _ in range(10):
                    run = instance.add_run(dg.DagsterRun(job_name="j", run_id=make_new_run_id()))
                    instance.add_run_tags(run.run_id, {"damnit/run": "7"})
                    instance.get_run_records(dg.RunsFilter(tags={"damnit/run": "7"}), limit=3)
                    instance.all_instigator_state()
            except Exception as e:   # reported below, with the thread's failure
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        storage = instance.run_storage
        with storage.connect() as outer:
            outer.exec_driver_sql("CREATE TABLE IF NOT EXISTS scratch (x)")
            assert len(storage.get_runs()) == 40   # another connection, not blocked
        assert len(instance.get_runs()) == 40


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connections(tmp_path):
    """A run worker forked from a warm process (the launcher's zygote) writes and reads
    through its own connections; the parent's keep working."""
    with project_instance(tmp_path) as instance:
        assert dg.materialize([answer], instance=instance).success
        pid = os.fork()
        if pid == 0:   # the child
            code = 1
            try:
                ok = dg.materialize([answer], instance=instance).success
                code = 0 if ok and len(instance.get_runs()) == 2 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(instance.get_runs()) == 2
        assert dg.materialize([answer], instance=instance).success


def test_a_schema_check_that_found_its_column_is_not_asked_again(tmp_path, monkeypatch):
    """Dagster asks the schema before every run query; the pooled storage asks once."""
    import sqlalchemy

    inspected = []
    inspect = sqlalchemy.inspect
    monkeypatch.setattr(sqlalchemy, "inspect", lambda *a: inspected.append(1) or inspect(*a))
    with project_instance(tmp_path) as instance:
        history = os.path.join(instance.root_directory, "history")
        counts = {}
        for storage in (SqliteRunStorage.from_local(history), instance.run_storage):
            inspected.clear()
            for _ in range(3):
                storage.get_run_records(limit=1)
            counts[type(storage).__name__] = len(inspected)
    assert counts == {"SqliteRunStorage": 3, "PooledSqliteRunStorage": 1}
