"""Run numbers as Dagster partitions: one dynamic partitions definition per proposal."""
from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

#: SQLite allows ~32k variables per statement; Dagster checks existing keys with one
#: ``IN (...)`` query, so large additions go in chunks (dagster-io/dagster#16260).
ADD_CHUNK = 1000

#: At most about this many values (runs x variables) in one Dagster run of a reprocess.
#: A Dagster run keeps one event per value: its page in the UI and the memory of a run
#: executed in process grow with them, so a long reprocess is cut into several runs.
VALUES_PER_DAGSTER_RUN = 5000


def partitions_name(proposal: int) -> str:
    """The instance-wide name of the proposal's run partitions: ``p1234_runs``."""
    return f"p{int(proposal)}_runs"


def runs_partitions(proposal: int) -> dg.DynamicPartitionsDefinition:
    """The dynamic partitions definition whose keys are the proposal's run numbers."""
    return dg.DynamicPartitionsDefinition(name=partitions_name(proposal))


def run_key(run: int) -> str:
    """The partition key of a run: the plain run number (no padding, no commas)."""
    return str(int(run))


def add_runs(instance: dg.DagsterInstance, proposal: int, runs: Iterable[int]) -> list[str]:
    """Add the runs that are not partitions yet; returns the keys added (in run order)."""
    name = partitions_name(proposal)
    existing = set(instance.get_dynamic_partitions(name))
    new = sorted({run_key(r) for r in runs} - existing, key=int)
    for i in range(0, len(new), ADD_CHUNK):
        instance.add_dynamic_partitions(name, new[i:i + ADD_CHUNK])
    return new


def runs_per_dagster_run(n_variables: int) -> int:
    """How many runs one Dagster run of a reprocess of ``n_variables`` covers at most
    (:data:`VALUES_PER_DAGSTER_RUN`, and at least one run)."""
    return max(1, VALUES_PER_DAGSTER_RUN // max(1, n_variables))


def partition_ranges(partition_keys: list[str], runs: list[int],
                     max_runs: int | None = None) -> list[tuple[str, str]]:
    """``runs`` as (first, last) partition keys of ranges that are contiguous in
    ``partition_keys`` (the order Dagster ranges follow), in that order; with
    ``max_runs``, none longer than that."""
    position = {key: i for i, key in enumerate(partition_keys)}
    wanted = sorted(position[str(r)] for r in runs)
    ranges, start = [], None
    for i, pos in enumerate(wanted):
        if start is None:
            start = pos
        if (i + 1 == len(wanted) or wanted[i + 1] != pos + 1
                or (max_runs is not None and pos - start + 1 == max_runs)):
            ranges.append((partition_keys[start], partition_keys[pos]))
            start = None
    return ranges
