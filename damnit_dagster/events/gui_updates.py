"""DAMNIT 0.4.0's update messages for its GUI, on the Kafka topic ``test.damnit.db-{db_id}``.

DAMNIT's GUI learns of new runs, values, variables and processing states only from these
messages (``{"msg_kind", "data"}`` JSON, ``damnit.backend.db.MsgKind``), so the backend
sends them as DAMNIT's does: ``variable_set`` when a variable's metadata changes,
``processing_state_set`` (``PENDING``, ``RUNNING``) and ``processing_finished`` around each
evaluation, ``run_values_updated`` once its values are committed.

Where they go (:func:`brokers_for`): the folder's ``gui_brokers`` setting, else
``AMORE_BROKER`` (DAMNIT's variable), ``none`` disabling either; when neither is set, a
folder on the facility's storage (``/gpfs/exfel/``) uses DAMNIT's default broker and any
other folder sends nothing.

Sending never holds up processing: messages go to a bounded buffer that a background
thread delivers; an unreachable broker is logged once, retried with a growing pause, and
the oldest messages are dropped when the buffer is full.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import queue
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

UPDATE_TOPIC = "test.damnit.db-{}"
FACILITY_BROKER = "exflwgs06.desy.de:9091"
FACILITY_STORAGE = "/gpfs/exfel/"
SETTING = "gui_brokers"

#: Messages waiting for the broker, at most.
BUFFER = 1000
#: The Kafka client id, and the name of the threads that send.
CLIENT_ID = "damnit-gui-updates"


def _not_ours(record: logging.LogRecord) -> bool:
    return not record.threadName.startswith(CLIENT_ID)


def quiet_kafka_logs() -> None:
    """kafka-python logs each failed connection; ours are reported once, by us."""
    import kafka.producer  # noqa: F401  (creates its loggers)

    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (name == "kafka" or name.startswith("kafka.")) and isinstance(logger, logging.Logger):
            if _not_ours not in logger.filters:
                logger.addFilter(_not_ours)


def brokers_for(damnit_dir, settings: dict | None, environ=None) -> list[str]:
    """The brokers a folder's update messages go to (empty: none are sent)."""
    environ = os.environ if environ is None else environ
    value = (settings or {}).get(SETTING) or environ.get("AMORE_BROKER")
    if not value:
        on_facility = str(Path(damnit_dir).absolute()).startswith(FACILITY_STORAGE)
        return [FACILITY_BROKER] if on_facility else []
    if value.strip().lower() == "none":
        return []
    return [b.strip() for b in value.split(",") if b.strip()]


def message(kind: str, data: dict) -> dict:
    """DAMNIT's ``msg_dict``."""
    return {"msg_kind": kind, "data": data}


class Publisher:
    """Delivers messages to ``brokers`` from a background thread, never blocking."""

    def __init__(self, brokers: list[str], *, buffer: int = BUFFER, connect_ms: int = 2000,
                 retry: float = 2.0, max_retry: float = 30.0):
        self.brokers = list(brokers)
        self._queue: queue.Queue = queue.Queue(maxsize=buffer)
        self._connect_ms, self._retry, self._max_retry = connect_ms, retry, max_retry
        self._producer = None
        self._stale: list = []
        self.down = False
        self._dropping = False
        threading.Thread(target=self._loop, name=CLIENT_ID, daemon=True).start()

    def send(self, topic: str, msg: dict) -> None:
        """Queue ``msg`` for ``topic``; when the buffer is full the oldest is dropped."""
        item = (topic, json.dumps(msg).encode())
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                if not self._dropping:
                    self._dropping = True
                    log.warning("GUI updates: %d messages wait for Kafka at %s; dropping the "
                                "oldest", self._queue.maxsize, ",".join(self.brokers))
                try:
                    self._queue.get_nowait()
                    self._queue.task_done()
                except queue.Empty:
                    pass

    def flush(self, timeout: float = 1.0, *, connect: bool = False) -> bool:
        """Wait up to ``timeout`` s for queued messages to be sent, while connected (at once
        when the broker is down, or not reached yet unless ``connect``)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if (self.down or (self._producer is None and not connect)
                    or time.monotonic() > deadline):
                return False
            time.sleep(0.002)
        producer = self._producer
        try:
            if producer is not None:
                producer.flush(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:
            return False
        return True

    def _loop(self) -> None:
        pause = self._retry
        while True:
            topic, value = self._queue.get()
            while not self._deliver(topic, value):
                time.sleep(pause)
                pause = min(self._max_retry, pause * 2)
            pause = self._retry
            self._queue.task_done()
            if self._queue.empty():
                self._dropping = False

    def _deliver(self, topic: str, value: bytes) -> bool:
        self._close_stale()
        try:
            if self._producer is None:
                self._producer = self._connect()
            self._producer.send(topic, value).add_errback(self._failed)
        except Exception as e:
            self._failed(e)
            return False
        if self.down:
            self.down = False
            log.warning("GUI updates: Kafka at %s reached again", ",".join(self.brokers))
        return True

    def _connect(self):
        from kafka import KafkaProducer

        quiet_kafka_logs()
        return KafkaProducer(bootstrap_servers=self.brokers, client_id=CLIENT_ID,
                             max_block_ms=self._connect_ms,
                             api_version_auto_timeout_ms=self._connect_ms,
                             request_timeout_ms=max(self._connect_ms, 5000),
                             reconnect_backoff_max_ms=10_000)

    def _failed(self, error) -> None:
        if not self.down:
            self.down = True
            log.warning("GUI updates: cannot reach Kafka at %s (%s); retrying, processing "
                        "goes on", ",".join(self.brokers), error)
        producer, self._producer = self._producer, None
        if producer is not None:   # closed by our thread, not Kafka's own
            self._stale.append(producer)

    def _close_stale(self) -> None:
        while self._stale:
            try:
                self._stale.pop().close(timeout=0)
            except Exception:
                pass


_publishers: dict[tuple, Publisher] = {}
_lock = threading.Lock()


def publisher(brokers: list[str]) -> Publisher:
    """This process's publisher for ``brokers`` (a forked child makes its own)."""
    key = (os.getpid(), tuple(brokers))
    with _lock:
        if key not in _publishers:
            _publishers[key] = Publisher(brokers)
        return _publishers[key]


def flush_all(timeout: float = 3.0) -> None:
    """A process's last call: let its publishers send what they hold, connecting first if
    they have not yet (a step that only stored a run evaluated before it started ends
    before its publisher has reached the broker); a broker not reached within ``timeout``
    seconds in all is given up."""
    deadline = time.monotonic() + timeout
    with _lock:
        mine = [p for (pid, _), p in _publishers.items() if pid == os.getpid()]
    for each in mine:
        each.flush(max(0.0, deadline - time.monotonic()), connect=True)


class GuiUpdates:
    """The update messages of one DAMNIT folder's database; without brokers, nothing."""

    def __init__(self, db_id: str | None, brokers: list[str]):
        self.topic = UPDATE_TOPIC.format(db_id)
        self._publisher = publisher(brokers) if brokers and db_id else None

    @classmethod
    def for_folder(cls, damnit_dir, settings: dict | None) -> GuiUpdates:
        """For the folder at ``damnit_dir`` with its ``metameta`` ``settings``."""
        settings = settings or {}
        return cls(settings.get("db_id"), brokers_for(damnit_dir, settings))

    @property
    def enabled(self) -> bool:
        return self._publisher is not None

    def send(self, kind: str, data: dict) -> None:
        if self._publisher is not None:
            self._publisher.send(self.topic, message(kind, data))

    def variables_set(self, variables: dict[str, dict]) -> None:
        """``variable_set`` for each of ``{name: {title, description, tags, ...}}``."""
        for name, var in variables.items():
            self.send("variable_set", {"name": name, "title": var.get("title"),
                                       "description": var.get("description"),
                                       "tags": list(var.get("tags") or ()),
                                       "attributes": None, "type": None})

    def processing_state(self, processing_id: str, proposal: int, run: int, data: str,
                         status: str, *, hostname: str | None = None,
                         username: str | None = None, slurm_cluster: str | None = None,
                         slurm_job_id: str = "") -> None:
        """``processing_state_set``: ``PENDING`` or ``RUNNING`` (by default here, as us)."""
        running = status == "RUNNING"
        self.send("processing_state_set", {
            "processing_id": processing_id, "proposal": int(proposal), "run": int(run),
            "data": data, "status": status,
            "hostname": hostname if hostname is not None else
            (socket.gethostname() if running else ""),
            "username": username if username is not None else
            (getpass.getuser() if running else ""),
            "slurm_cluster": slurm_cluster, "slurm_job_id": slurm_job_id})

    def run_values_updated(self, proposal: int, run: int, names) -> None:
        """The run's stored ``names`` (the GUI reads their values from ``runs.sqlite``)."""
        self.send("run_values_updated", {"run": int(run), "proposal": int(proposal),
                                         "values": {name: None for name in names}})

    def processing_finished(self, processing_id: str) -> None:
        self.send("processing_finished", {"processing_id": processing_id})

    def variables_changed(self, described, changed) -> None:
        """``variable_set`` for the ``changed`` names of ``described`` (a context file's
        ``describe()`` dicts)."""
        self.variables_set({d["name"]: d for d in described if d["name"] in set(changed)})

    def flush(self, timeout: float = 1.0, *, connect: bool = False) -> bool:
        """Let queued messages go before this process exits (at once if the broker is down)."""
        if self._publisher is None:
            return True
        return self._publisher.flush(timeout, connect=connect)
