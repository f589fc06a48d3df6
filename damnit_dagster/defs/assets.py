"""A context file as Dagster software-defined assets.

Each saved variable is one asset ``p{proposal}/<name>`` (a group's dotted name becomes a
key path: ``p1234/xgm_sa2/pulse_energy``), partitioned by run number, with:

* deps mirroring the ``var#``/``self#`` annotations (through transient variables, which
  are not assets since nothing of them is stored);
* tags ``data`` (raw/proc), ``cluster`` (true/false) and the user's tags;
* the docstring as description, title/units/summary/source line as metadata;
* a code version from the variable's source and its upstream's (stale marks);
* an ``evaluation`` check that records failed (ERROR) and skipped (WARN) variables.

Variables are computed by one ``multi_asset`` per *execution bucket*: ``local`` (all
non-cluster variables) and ``cluster`` (``cluster=True`` ones, in the ``cluster`` pool).
Raw and proc share a bucket on purpose: Dagster skips a whole downstream step when one
of its upstream outputs is missing, so a proc variable depending on a raw one that was
skipped would silently skip every other proc variable of an ``all`` run. Within one
step, our own code applies DAMNIT's rules per variable. A step evaluates the selected
variables of each run in its partition range with one open of the run, stores them with
one locked write and yields events (:mod:`.outcomes`), which the project's event log
writes together, per run. A ``reprocess --stale`` run (tag ``damnit/inputs=stored``) and
the proc pass read the saved inputs of what they compute from the run's file instead of
computing them again.

A visible asset ``p{proposal}/context.py`` carries the state of the context file: which
version is served and, if the current file is broken, its errors.
"""

import contextlib
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
from dagster import AssetExecutionContext

from damnit_dagster.defs.context_source import ContextSnapshot, evaluation_path
from damnit_dagster.defs.outcomes import CHECK_NAME, events_for_run
from damnit_dagster.defs.partitions import runs_partitions, runs_per_dagster_run
from damnit_dagster.defs.resources import DamnitFolder
from damnit_dagster.defs.slurm_step import on_slurm
from damnit_dagster.defs.tags import (
    CALIBRATION,
    EVENT_ID,
    EXECUTOR,
    INPUTS,
    PROCESSING,
    STORED,
    TRIGGER,
    group_name,
    processing_id,
)
from damnit_dagster.defs.tags import RUN_KEY as RUN_KEY_TAG
from damnit_dagster.defs.variables import (
    CLUSTER,
    LOCAL,
    bucket_of,
    lineage,
    saved_variables,
    trigger_for,
)
from damnit_dagster.execution.fork_worker import WorkerPool
from damnit_dagster.execution.process_run import (
    ERROR,
    NONE,
    OK,
    SKIPPED,
    RunOutcome,
    evaluate_and_store,
)
from damnit_dagster.execution.slurm_array import SlurmArray
from damnit_dagster.plugins.event_storage import stored_together
from damnit_dagster.storage.provenance import Versions

_TAG_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_RESERVED_TAGS = {"data", "cluster"}


def variable_key(proposal: int, name: str) -> dg.AssetKey:
    """``p1234/xgm_sa2/pulse_energy`` for variable ``xgm_sa2.pulse_energy``."""
    return dg.AssetKey([group_name(proposal), *name.split(".")])


def context_file_key(proposal: int) -> dg.AssetKey:
    """The key of the asset describing the context file itself."""
    return dg.AssetKey([group_name(proposal), "context.py"])


def variable_tags(var: dict) -> dict[str, str]:
    """Dagster tags: ``data``, ``cluster`` and the user's tags (as keys with an empty
    value; characters Dagster does not accept become ``_``)."""
    tags = {"data": var["data"], "cluster": "true" if var.get("cluster") else "false"}
    for tag in var.get("tags") or ():
        key = _TAG_BAD_CHARS.sub("_", str(tag))[:63]
        if key and key not in _RESERVED_TAGS:
            tags[key] = ""
    return tags


def variable_spec(proposal: int, var: dict, parents: list[str], context_name: str) -> dg.AssetSpec:
    """The asset spec of one saved variable."""
    metadata = {"title": var.get("title") or var["name"],
                "source": f"{context_name}:{var.get('line')}"}
    for field in ("units", "summary"):
        if var.get(field):
            metadata[field] = str(var[field])
    return dg.AssetSpec(
        key=variable_key(proposal, var["name"]),
        deps=[variable_key(proposal, p) for p in parents],
        description=var.get("description") or var.get("title"),
        metadata=metadata, tags=variable_tags(var), code_version=var["code_version"],
        group_name=group_name(proposal), skippable=True, kinds={"python"},
        partitions_def=runs_partitions(proposal))


#: Seconds between the log entries of a step covering many runs.
LOG_EVERY = 1.0


def summarise(outcome: RunOutcome, names: list[str]) -> str:
    """``r7: 20 ok, 1 skipped, 2 failed`` for the log."""
    if outcome.error:
        return f"r{outcome.run}: not processed: {outcome.error}"
    counts = {OK: 0, SKIPPED: 0, NONE: 0, ERROR: 0}
    for name in names:
        status = outcome.variables.get(name, {}).get("status", SKIPPED)
        counts[status] = counts.get(status, 0) + 1
    return (f"r{outcome.run}: {counts[OK]} ok, {counts[SKIPPED]} skipped, "
            f"{counts[NONE]} none, {counts[ERROR]} failed ({outcome.duration:.2f} s)")


def build_bucket_asset(snapshot: ContextSnapshot, proposal: int, bucket: str,
                       evaluate: Callable = evaluate_and_store,
                       slurm_array: SlurmArray | None = None) -> dg.AssetsDefinition:
    """The multi_asset computing the saved variables of one bucket (``slurm_array``: one
    already submitted, which a ``reprocess --slurm`` step follows when it fits)."""
    variables = {v["name"]: v for v in saved_variables(snapshot.variables)}
    names_in_bucket = [n for n, v in variables.items() if bucket_of(v) == bucket]
    parents = lineage(snapshot.variables)
    specs = [variable_spec(proposal, variables[n], parents[n], "context.py")
             for n in names_in_bucket]

    def key_of(name):
        return variable_key(proposal, name)

    @dg.multi_asset(
        name=f"p{proposal}_{bucket}", specs=specs, can_subset=True,
        check_specs=[dg.AssetCheckSpec(
            CHECK_NAME, asset=s.key,
            description="Fails (ERROR) when the variable raised, warns (WARN) when it was "
                        "skipped or returned None for the run.") for s in specs],
        partitions_def=runs_partitions(proposal),
        backfill_policy=dg.BackfillPolicy.multi_run(
            runs_per_dagster_run(len(names_in_bucket))),
        pool="cluster" if bucket == CLUSTER else None,
        description=f"Computes the {bucket} variables of proposal {proposal}'s context file.")
    def compute(context: AssetExecutionContext, damnit: DamnitFolder):
        selected = [n for n in names_in_bucket if key_of(n) in context.selected_asset_keys]
        data = trigger_for([variables[n] for n in selected])
        path = evaluation_path(snapshot)
        python = damnit.context_python()
        settings = damnit.settings()
        runs = [int(k) for k in context.partition_keys]
        not_processed = []
        t0 = time.perf_counter()

        run_tags = context.run.tags
        run_key = run_tags.get(RUN_KEY_TAG) or run_tags.get(PROCESSING)
        stored_inputs = (run_tags.get(INPUTS) == STORED
                         or run_tags.get(TRIGGER) == CALIBRATION)
        head_start = (bucket == LOCAL and EVENT_ID in run_tags and len(runs) == 1
                      and not stored_inputs)
        workers = WorkerPool() if stored_inputs and bucket == LOCAL else None
        versions = Versions({n: v["code_version"] for n, v in variables.items()}, parents,
                            context.run.run_id)

        def evaluate_run(run, evaluator=None):
            return evaluate(damnit.path, proposal, run, path, selected, data,
                            context_python=python, settings=settings, cluster=bucket == CLUSTER,
                            processing_id=processing_id(run_key, run) if run_key else None,
                            stored_inputs=stored_inputs, versions=versions,
                            evaluator=evaluator, head_start=head_start, workers=workers)

        def finished(outcomes):
            # a line per run, gathered into one log entry per LOG_EVERY seconds: each
            # entry is an event stored in the instance, as costly as a value's
            lines, said = [], t0
            for i, (run, outcome) in enumerate(outcomes, 1):
                with stored_together(context.instance):   # one run's events: all or none
                    yield from events_for_run(outcome, selected, variables, parents, key_of)
                if outcome.error:
                    not_processed.append(f"r{run}: {outcome.error}")
                lines.append(summarise(outcome, selected))
                now = time.perf_counter()
                if i == len(runs) or now - said >= LOG_EVERY:
                    context.log.info("\n".join(lines) + f" [{i}/{len(runs)} runs, "
                                     f"{now - t0:.1f} s]")
                    lines, said = [], now

        if bucket == LOCAL and run_tags.get(EXECUTOR) == "slurm":
            yield from finished(on_slurm(context, damnit, proposal, runs, path, selected, data,
                                         settings, evaluate_run, stored_inputs,
                                         submitted=slurm_array))
        else:
            # A ranged run evaluates several runs at once (one per core, each in its own
            # forked child; from stored inputs, each thread's runs in one warm child) and
            # reports them in order; the user's code is loaded once.
            threads = 1 if bucket == CLUSTER else min(len(runs),
                                                      len(os.sched_getaffinity(0)) + 1)
            with (ThreadPoolExecutor(max_workers=threads, thread_name_prefix="evaluate") as pool,
                  workers or contextlib.nullcontext()):
                yield from finished(zip(runs, pool.map(evaluate_run, runs)))
        if not_processed:
            raise dg.Failure(description=f"{len(not_processed)} of {len(runs)} runs could not "
                                         "be processed:\n" + "\n".join(not_processed))

    return compute


def head_starter(snapshot: ContextSnapshot, proposal: int, damnit: DamnitFolder,
                 trigger: str = "raw") -> Callable[[int], bool]:
    """``start(run)``: ask the backend's warm process to evaluate now what the step of
    the ``trigger`` job will evaluate for ``run`` (:mod:`damnit_dagster.execution.head_start`),
    which that step then takes over; False when it cannot be asked."""
    from damnit_dagster.execution import head_start
    from damnit_dagster.execution.process_run import same_interpreter

    chosen = [v for v in saved_variables(snapshot.variables)
              if bucket_of(v) == LOCAL and v["data"] == trigger]

    def start(run: int) -> bool:
        if not chosen or not same_interpreter(damnit.context_python()):
            return False
        return head_start.request(damnit_dir=damnit.path, proposal=proposal, run=run,
                                  context_path=evaluation_path(snapshot),
                                  variables=[v["name"] for v in chosen],
                                  data=trigger_for(chosen), settings=damnit.settings())
    return start


def context_file_asset(snapshot: ContextSnapshot, proposal: int) -> dg.AssetSpec:
    """A visible asset telling which context file version is served, and any error."""
    if snapshot.error is None:
        description = f"Context file of proposal {proposal}: {len(snapshot.variables)} variables."
    elif snapshot.good_copy is not None:
        description = ("The current context.py has errors; the last good version is still "
                       f"served.\n\n```\n{snapshot.error}\n```")
    else:
        description = ("The context file has errors and no earlier version loaded."
                       f"\n\n```\n{snapshot.error}\n```")
    metadata = {"path": dg.MetadataValue.path(str(snapshot.damnit_dir / "context.py")),
                "status": "error" if snapshot.error else "ok",
                "variables": len(snapshot.variables)}
    if snapshot.sha256:
        metadata["served_sha256"] = snapshot.sha256
    if snapshot.loaded_at:
        metadata["served_since"] = time.strftime("%Y-%m-%d %H:%M:%S",
                                                 time.localtime(snapshot.loaded_at))
    if snapshot.error:
        metadata["error"] = dg.MetadataValue.md(f"```\n{snapshot.error}\n```")
    return dg.AssetSpec(key=context_file_key(proposal), description=description,
                        metadata=metadata, group_name=group_name(proposal), kinds={"python"},
                        tags={"status": "error" if snapshot.error else "ok"})


def build_assets(snapshot: ContextSnapshot, proposal: int,
                 evaluate: Callable = evaluate_and_store,
                 slurm_array: SlurmArray | None = None) -> list:
    """Every asset of a served context file: one multi_asset per non-empty bucket, plus
    the context-file asset."""
    saved = saved_variables(snapshot.variables)
    assets = [build_bucket_asset(snapshot, proposal, bucket, evaluate, slurm_array)
              for bucket in (LOCAL, CLUSTER) if any(bucket_of(v) == bucket for v in saved)]
    return [*assets, context_file_asset(snapshot, proposal)]
