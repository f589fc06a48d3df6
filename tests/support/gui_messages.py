"""DAMNIT's GUI update messages as a GUI receives them, from a real broker."""
import json

from damnit.backend.db import MsgKind


def consume(broker, db_id, until: MsgKind, timeout=20, count=1) -> list[dict]:
    """The messages on the folder's topic ``test.damnit.db-{db_id}`` from its start up to
    the ``count``-th of kind ``until``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(f"test.damnit.db-{db_id}", bootstrap_servers=[broker],
                             auto_offset_reset="earliest", consumer_timeout_ms=timeout * 1000)
    messages = []
    try:
        for record in consumer:
            messages.append(json.loads(record.value))
            if sum(MsgKind(m["msg_kind"]) == until for m in messages) == count:
                return messages
    finally:
        consumer.close()
    raise AssertionError(f"no {until} within {timeout} s; got {messages}")
