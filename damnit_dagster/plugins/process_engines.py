"""What the project's SQLite storages share: SQLAlchemy engines kept open for one process
(a run worker forked from the launcher's zygote makes its own), and the optional
``base_dir`` setting of Dagster's SQLite storages."""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator

from dagster import Field, StringSource
from sqlalchemy.engine import Engine


class ProcessEngines:
    """Open engines by key, most recently used last, belonging to this process.

    In a process forked from the one that opened them, the engines are set aside, neither
    used nor closed (their connections are the parent's), and new ones are opened.
    """

    def __init__(self):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._pid = os.getpid()
        self._inherited: list[Engine] = []

    def _own(self) -> OrderedDict[str, Engine]:
        if self._pid != os.getpid():
            self._inherited.extend(self._engines.values())
            self._engines = OrderedDict()
            self._pid = os.getpid()
        return self._engines

    def get(self, key: str) -> Engine | None:
        """This process's engine for ``key`` (now the most recently used), or None."""
        engines = self._own()
        engine = engines.get(key)
        if engine is not None:
            engines.move_to_end(key)
        return engine

    def add(self, key: str, engine: Engine) -> None:
        self._own()[key] = engine

    def keys(self) -> Iterator[str]:
        """Keys of the open engines, least recently used first."""
        return iter(list(self._own()))

    def close(self, key: str) -> None:
        """Dispose of ``key``'s engine, if open."""
        engine = self._own().pop(key, None)
        if engine is not None:
            engine.dispose()

    def close_all(self) -> None:
        engines = self._own()
        for engine in engines.values():
            engine.dispose()
        engines.clear()


class BaseDirConfigurable:
    """``dagster.yaml`` settings of a storage: ``config: {base_dir: ...}``, optional (the
    storage then uses the instance's folder)."""

    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)
