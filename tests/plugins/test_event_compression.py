"""The events the storage writes in batches are stored compressed, and every reader of the
instance gets the JSON Dagster wrote."""
import sqlite3
import time

import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage
from test_event_rows import RUN_ID, entry, materialization

from damnit_dagster.plugins.event_compression import PREFIX, compress, expand
from damnit_dagster.plugins.event_storage import KeptOpenSqliteEventLogStorage

#: A log line as stored by the first dictionary, and its JSON: a record written today must
#: read the same after any change to the code or the dictionary.
STORED_V1 = bytes.fromhex(
    "00011b3c63af4037252625a79016323882c5021e2ca65842a4c8dc4ac158213f5ba91600")
JSON_V1 = ('{"__class__": "EventLogEntry", "dagster_event": null, "error_info": null, '
           '"level": 20, "message": "", "pipeline_name": "all", '
           '"run_id": "0123abcd-0000-0000-0000-000000000000", "step_key": "p1_local", '
           '"timestamp": 1800000000.5, "user_message": "r7: 3 ok"}')


def stored_events(path) -> list:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT event FROM event_logs ORDER BY id")]
    finally:
        conn.close()


def test_a_record_stored_by_the_first_dictionary_reads_back():
    assert expand(STORED_V1) == JSON_V1
    assert expand(compress(JSON_V1)) == JSON_V1
    assert expand(JSON_V1) == JSON_V1   # text (as Dagster's own storage writes) stays
    assert expand(b"\x89PNG") == b"\x89PNG"   # and so does a BLOB of another kind


def test_a_runs_values_are_stored_compressed_and_read_as_dagster_wrote_them(tmp_path):
    t = time.time()
    batch = [materialization(name, "1", t) for name in "abcd"]
    batch.append(entry(None, text="r1: 4 ok"))
    ours = KeptOpenSqliteEventLogStorage(str(tmp_path / "ours"))
    stock = SqliteEventLogStorage(str(tmp_path / "stock"))
    start = entry(dg.DagsterEventType.RUN_START)
    ours.store_event(start)   # Dagster's own path, one event at a time
    with ours.stored_together():
        for event in batch:
            ours.store_event(event)
    for event in [start, *batch]:
        stock.store_event(event)

    for shard, count in ((f"{RUN_ID}.db", 6), ("index.db", 5)):
        rows = stored_events(tmp_path / "ours" / shard)
        assert len(rows) == count
        assert all(isinstance(r, bytes) and r.startswith(PREFIX) for r in rows), shard
        stored = [start, *batch] if shard != "index.db" else [start, *batch[:4]]
        for record, original in zip(rows, stored):
            assert len(record) * 4 < len(dg.serialize_value(original))
            assert expand(record) == dg.serialize_value(original)

    def seen(storage):
        return ([r.event_log_entry for r in storage.get_records_for_run(RUN_ID).records],
                [r.event_log_entry for r in storage.fetch_materializations(
                    dg.AssetKey(["p1", "c"]), limit=5).records],
                storage.get_latest_materialization_events([dg.AssetKey(["p1", "d"])]))

    assert seen(ours) == seen(stock)
    latest = seen(ours)[2][dg.AssetKey(["p1", "d"])]
    assert latest.asset_materialization.metadata["hdf5"] == dg.MetadataValue.path("/x/p1_r1.h5")
    ours.dispose()
    stock.dispose()
