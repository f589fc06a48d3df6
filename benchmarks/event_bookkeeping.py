"""What Dagster's bookkeeping costs per stored value: storing a step's events.

For ``--runs`` runs of 25 variables (``--images`` of them with a PNG thumbnail as their
summary, ``--failed`` failed), the events a step yields for each run are made by
``defs/outcomes.py`` as the step makes them, wrapped as Dagster wraps a step's events,
and stored into a fresh instance directory by:

* **Dagster**: Dagster's own ``SqliteEventLogStorage``, one event at a time (the
  baseline);
* **ours, one at a time**: the project's ``KeptOpenSqliteEventLogStorage`` without a
  scope (as before issue 19);
* **ours**: the same, each run's events inside ``stored_together`` as the step stores
  them.

Per stored value: CPU and wall time of storing, the serialised event's size and the
event log's size on disk (``history/runs/`` after the storage is closed).

    python benchmarks/event_bookkeeping.py [--runs 40] [--images 2] [--failed 1] [--live]
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path


def thumbnail() -> bytes:
    """A PNG like DAMNIT's detector-image summaries (a 150 x 150 plot)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:150, 0:150]
    rng = np.random.default_rng(0)
    img = (127 + 80 * np.sin(x / 9.0) * np.cos(y / 13.0) + rng.normal(0, 6, x.shape))
    buf = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype("uint8")).save(buf, format="PNG")
    return buf.getvalue()


def run_events(run: int, run_id: str, names: list[str], images: int, failed: int) -> list:
    """The events a step stores for one run, as Dagster wraps them."""
    import dagster as dg
    from dagster._core.definitions.dependency import NodeHandle
    from dagster._core.events import DagsterEvent, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.execution.plan.handle import StepHandle

    from damnit_dagster.defs.outcomes import events_for_run
    from damnit_dagster.execution.process_run import ERROR, OK, RunOutcome

    png = thumbnail()
    variables = {n: {"name": n, "title": n.replace("_", " ").title(), "units": "uJ",
                     "code_version": uuid.uuid4().hex[:16]} for n in names}
    parents = {n: names[:1] if i % 3 == 1 else [] for i, n in enumerate(names)}
    outcome = RunOutcome(run=run, hdf5_path=Path(f"/gpfs/exfel/p1234/usr/amore/extracted_data/"
                                                 f"p1234_r{run}.h5"), data_opened="raw")
    for i, name in enumerate(names):
        if i >= len(names) - failed:
            outcome.variables[name] = {"status": ERROR, "error": "division by zero",
                                       "error_cls": "ZeroDivisionError", "duration": 0.01}
            continue
        outcome.variables[name] = {"status": OK, "duration": 0.0123}
        outcome.summaries[name] = png if i < images else 1.2345 * i
        outcome.records[name] = {"source": "raw", "host": "exflonc12",
                                 "inputs": {p: variables[p]["code_version"]
                                            for p in parents[name]}}
    node = NodeHandle("p1234_local", None)
    tags = {"job_name": "__ASSET_JOB", "op_name": "p1234_local", "resource_fn_name": "None",
            "resource_name": "None", "run_id": run_id, "step_key": "p1234_local"}
    entries = []
    for event in events_for_run(outcome, names, variables, parents,
                                lambda n: dg.AssetKey(["p1234", n])):
        if isinstance(event, dg.AssetMaterialization):
            kind, data = dg.DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(event)
            message = f"Materialized value {' '.join(event.asset_key.path)}."
        else:
            kind, data = dg.DagsterEventType.ASSET_CHECK_EVALUATION, event
            message = (f"Asset check 'evaluation' on '{event.asset_key.to_user_string()}' did "
                       f"not pass. Description: '{event.description}'")
        dagster_event = DagsterEvent(
            kind.value, job_name="__ASSET_JOB", event_specific_data=data, message=message,
            step_handle=StepHandle(node), node_handle=node, step_kind_value="COMPUTE",
            logging_tags=tags, pid=os.getpid())
        entries.append(EventLogEntry(
            error_info=None, level=logging.DEBUG, user_message=message, run_id=run_id,
            timestamp=time.time(), step_key="p1234_local", job_name="__ASSET_JOB",
            dagster_event=dagster_event))
    return entries


def measure(storage, base: Path, runs: list[list], together: bool) -> dict:
    """Store every run's events; CPU, wall and disk per value."""
    from contextlib import nullcontext

    n = sum(len(events) for events in runs)
    storage.store_event(runs[0][0])   # create the databases before timing
    t, c = time.perf_counter(), time.process_time()
    for i, events in enumerate(runs):
        with storage.stored_together() if together else nullcontext():
            for event in events[1 if i == 0 else 0:]:
                storage.store_event(event)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    storage.dispose()
    disk = sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
    return {"cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n, "disk_b": disk / n}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--failed", type=int, default=1)
    ap.add_argument("--live", action="store_true",
                    help="each run in a Dagster run of its own, as live processing stores "
                         "them (default: all in one, as a reprocess)")
    args = ap.parse_args(argv)

    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._serdes import serialize_value

    from damnit_dagster.plugins.event_storage import KeptOpenSqliteEventLogStorage

    names = [f"var_{i:02d}" for i in range(25)]
    run_id = str(uuid.uuid4())
    runs = [run_events(r, str(uuid.uuid4()) if args.live else run_id, names, args.images,
                       args.failed)
            for r in range(1, args.runs + 1)]
    sizes = [len(serialize_value(e)) for e in runs[0]]
    tmp = Path(tempfile.mkdtemp(prefix="event_bookkeeping-"))
    try:
        results = {
            "Dagster": measure(SqliteEventLogStorage(str(tmp / "stock")), tmp / "stock",
                               runs, together=False),
            "single": measure(KeptOpenSqliteEventLogStorage(str(tmp / "single")),
                              tmp / "single", runs, together=False),
            "ours": measure(KeptOpenSqliteEventLogStorage(str(tmp / "ours")), tmp / "ours",
                            runs, together=True),
        }
    finally:
        shutil.rmtree(tmp)
    base, single, ours = results["Dagster"], results["single"], results["ours"]
    print(f"{args.runs} runs x 25 values ({args.images} PNG summaries, {args.failed} failed "
          f"per run), {'a Dagster run per run' if args.live else 'in one Dagster run'}; "
          f"serialised event {min(sizes)}-{max(sizes)} bytes, "
          f"mean {sum(sizes) / len(sizes):.0f}\n")
    print("| per stored value | Dagster | ours, one at a time | ours | ours/Dagster | goal |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, label, goal in (("cpu_ms", "CPU (ms)", "< 1"), ("wall_ms", "wall (ms)", ""),
                             ("disk_b", "event log on disk (bytes)", "< 2048")):
        print(f"| {label} | {base[key]:.2f} | {single[key]:.2f} | {ours[key]:.2f} | "
              f"{ours[key] / base[key]:.2f} | {goal} |")


if __name__ == "__main__":
    main()
