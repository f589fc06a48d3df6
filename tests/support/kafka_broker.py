"""A real Kafka broker (nafka, :mod:`support.nafka_server`) on 127.0.0.1 for the event
tests, and a producer sending to it (tests/conftest.py makes it the ``kafka_broker``
fixture)."""
import contextlib
import json
import socket
import subprocess
import sys
import time

import pytest

from support.paths import SUPPORT


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_broker(tmp_path):
    """A real Kafka broker (nafka) on 127.0.0.1, in its own process, storing into
    ``tmp_path``; yields its address ``host:port``."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SUPPORT / "nafka_server.py"), "--port", str(port),
         "--file", str(tmp_path / "kafka.sqlite")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("nafka did not start")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def send(broker, messages):
    """Send ``(topic, value)`` pairs (bytes, or JSON-encoded) to ``broker``."""
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[broker])
    for topic, value in messages:
        producer.send(topic, value if isinstance(value, bytes) else json.dumps(value).encode())
    producer.flush()
    producer.close()
