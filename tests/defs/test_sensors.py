"""The event sensor, evaluated against a real temporary Dagster instance."""
import time

import dagster as dg
import pytest

from damnit_dagster.defs.sensors import EventSensorSettings, SensorCursor, build_event_sensor
from damnit_dagster.events.inbox import EventInbox

PROPOSAL = 1234


@pytest.fixture
def setup(tmp_path):
    """A tiny stand-in code location: one raw and one proc asset, jobs raw and proc."""
    runs = dg.DynamicPartitionsDefinition(name=f"p{PROPOSAL}_runs")

    @dg.asset(partitions_def=runs, tags={"data": "raw"})
    def raw_var():
        return None

    @dg.asset(partitions_def=runs, tags={"data": "proc"})
    def proc_var():
        return None

    jobs = [dg.define_asset_job("raw", selection=dg.AssetSelection.tag("data", "raw")),
            dg.define_asset_job("proc", selection=dg.AssetSelection.tag("data", "proc"))]
    proposal_dir = tmp_path / "p001234"
    inbox = EventInbox(tmp_path / "events.sqlite")
    sensor = build_event_sensor(proposal=PROPOSAL, inbox_path=inbox.path, partitions_def=runs,
                                jobs=jobs, proposal_dir=proposal_dir,
                                settings=EventSensorSettings(folder_wait=30))
    defs = dg.Definitions(assets=[raw_var, proc_var], jobs=jobs, sensors=[sensor])
    with dg.instance_for_test() as instance:
        yield instance, defs, sensor, inbox, proposal_dir


def make_run_folder(proposal_dir, data, run):
    (proposal_dir / data / f"r{run:04d}").mkdir(parents=True, exist_ok=True)


def tick(instance, defs, sensor, cursor):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = sensor(ctx)
    if isinstance(result, dg.SkipReason):
        return [], [], cursor
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
    return result.run_requests, added, result.cursor


def test_migration_and_calibration_request_raw_and_proc_jobs(setup):
    instance, defs, sensor, inbox, proposal_dir = setup
    make_run_folder(proposal_dir, "raw", 5)
    make_run_folder(proposal_dir, "proc", 5)
    inbox.add("migration", PROPOSAL, 5)
    inbox.add("calibration", PROPOSAL, 5)
    inbox.add("migration", 4321, 5)  # another proposal: not ours
    requests, added, cursor = tick(instance, defs, sensor, None)
    assert [(r.job_name, r.partition_key) for r in requests] == [("raw", "5"), ("proc", "5")]
    assert added == ["5"]
    assert instance.get_dynamic_partitions(f"p{PROPOSAL}_runs") == ["5"]
    # Nothing new: the next tick skips.
    assert tick(instance, defs, sensor, cursor)[0] == []


def test_duplicate_events_run_once(setup):
    instance, defs, sensor, inbox, proposal_dir = setup
    make_run_folder(proposal_dir, "raw", 7)
    inbox.add("migration", PROPOSAL, 7)
    inbox.add("migration", PROPOSAL, 7)
    requests, _, cursor = tick(instance, defs, sensor, None)
    inbox.add("migration", PROPOSAL, 7)   # a third copy in a later tick
    later, _, _ = tick(instance, defs, sensor, cursor)
    assert [(r.job_name, r.partition_key) for r in requests + later] == [("raw", "7")]


def partitions_of(request):
    """The run numbers a run request covers (one partition, or a range of them)."""
    if request.partition_key is not None:
        return [int(request.partition_key)]
    start, end = request.partition_key_range
    return list(range(int(start), int(end) + 1))


def test_a_burst_of_200_events_is_one_ranged_run(setup):
    instance, defs, sensor, inbox, proposal_dir = setup
    for run in range(1, 201):
        make_run_folder(proposal_dir, "raw", run)
        inbox.add("migration", PROPOSAL, run)
    requests, added, _ = tick(instance, defs, sensor, None)
    assert [(r.job_name, partitions_of(r)) for r in requests] == [("raw", list(range(1, 201)))]
    assert requests[0].tags["dagster/priority"] == "10"
    assert sorted(map(int, added)) == list(range(1, 201))


def test_coalescing_keeps_kinds_apart_and_each_run_once(setup):
    instance, defs, sensor, inbox, proposal_dir = setup
    instance.add_dynamic_partitions(f"p{PROPOSAL}_runs", ["1", "2", "3", "4", "5"])
    for run in range(1, 8):
        make_run_folder(proposal_dir, "raw", run)
        make_run_folder(proposal_dir, "proc", run)
    for kind, run in [("migration", 2), ("migration", 3), ("calibration", 1),
                      ("migration", 2), ("migration", 5), ("migration", 6), ("migration", 7),
                      ("calibration", 2), ("migration", 3)]:
        inbox.add(kind, PROPOSAL, run)
    requests, added, _ = tick(instance, defs, sensor, None)
    # raw 2-3 contiguous; 4 has no event, so 5-7 is another range (6, 7 are new partitions)
    assert [(r.job_name, partitions_of(r)) for r in requests] == [
        ("raw", [2, 3]), ("proc", [1, 2]), ("raw", [5, 6, 7])]
    assert len({r.run_key for r in requests}) == 3
    assert added == ["6", "7"]


def test_event_waits_for_its_data_folder(setup):
    instance, defs, sensor, inbox, proposal_dir = setup
    inbox.add("migration", PROPOSAL, 9)
    requests, _, cursor = tick(instance, defs, sensor, None)
    assert requests == []
    assert SensorCursor.load(cursor).waiting  # remembered, not lost
    make_run_folder(proposal_dir, "raw", 9)
    requests, _, cursor = tick(instance, defs, sensor, cursor)
    assert [(r.job_name, r.partition_key) for r in requests] == [("raw", "9")]
    assert SensorCursor.load(cursor).waiting == []


def test_event_whose_folder_never_appears_is_dropped_with_a_reason(setup, capfd):
    instance, defs, sensor, inbox, proposal_dir = setup
    make_run_folder(proposal_dir, "raw", 2)
    inbox.add("migration", PROPOSAL, 1, received_at=time.time() - 60)  # past folder_wait=30
    inbox.add("migration", PROPOSAL, 2)
    requests, _, cursor = tick(instance, defs, sensor, None)
    assert [r.partition_key for r in requests] == ["2"]
    assert "raw/r0001 still does not exist after 30 s" in capfd.readouterr().err
    assert SensorCursor.load(cursor).waiting == []


def test_first_start_does_not_replay_old_history(setup):
    instance, defs, sensor, inbox, proposal_dir = setup
    long_ago = time.time() - 86400
    for run in range(1, 51):
        make_run_folder(proposal_dir, "raw", run)
        inbox.add("migration", PROPOSAL, run, received_at=long_ago)
    inbox.add("migration", PROPOSAL, 51)
    make_run_folder(proposal_dir, "raw", 51)
    requests, _, _ = tick(instance, defs, sensor, None)
    assert [r.partition_key for r in requests] == ["51"]


def test_contexts_with_cluster_variables_get_the_follow_up_cluster_run(tmp_path):
    runs = dg.DynamicPartitionsDefinition(name=f"p{PROPOSAL}_runs")

    @dg.asset(partitions_def=runs, tags={"data": "raw", "cluster": "false"})
    def local_var():
        return None

    @dg.asset(partitions_def=runs, tags={"data": "raw", "cluster": "true"})
    def heavy_var():
        return None

    jobs = [dg.define_asset_job("raw", selection=dg.AssetSelection.tag("cluster", "false")),
            dg.define_asset_job("proc", selection=dg.AssetSelection.tag("data", "proc")),
            dg.define_asset_job("raw_cluster", selection=dg.AssetSelection.tag("cluster", "true"))]
    inbox = EventInbox(tmp_path / "events.sqlite")
    make_run_folder(tmp_path / "p001234", "raw", 3)
    sensor = build_event_sensor(proposal=PROPOSAL, inbox_path=inbox.path, partitions_def=runs,
                                jobs=jobs, proposal_dir=tmp_path / "p001234")
    defs = dg.Definitions(assets=[local_var, heavy_var], jobs=jobs, sensors=[sensor])
    inbox.add("migration", PROPOSAL, 3)
    with dg.instance_for_test() as instance:
        requests, _, _ = tick(instance, defs, sensor, None)
    assert [(r.job_name, r.partition_key, r.tags.get("damnit/placement")) for r in requests] == [
        ("raw", "3", None), ("raw_cluster", "3", "cluster")]
