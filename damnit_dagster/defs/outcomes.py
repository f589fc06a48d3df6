"""Turn what happened to a run's variables into the Dagster events the UI shows.

* A variable that produced a value: an ``AssetMaterialization`` of its partition with
  what the UI cannot find elsewhere: the summary (for an image, where its PNG thumbnail is
  in the run's HDF5 file, never the image itself), the HDF5 path and how long it took.
  Title and units are the asset's own metadata. Its provenance (the record
  ``/.provenance/<name>`` of the run file) shows as the data the run was opened with
  (``raw`` or ``all``) and the host, and as Dagster's provenance tags (code version, data
  versions of its inputs), so the UI marks it stale when its code or an upstream
  variable's code changes; the event itself has the time and the Dagster run.
* A variable that failed: a failed ``evaluation`` check (severity ERROR) on that
  partition, with the error text and class.
* A variable that was skipped (``Skip``, a missing dependency, no proc data) or returned
  ``None``: a failed ``evaluation`` check with severity WARN, so it looks different from a
  failure. Neither has a materialization: the partition stays missing.

Every stored value's event is written twice (the run's log, the cross-run index), so
each metadata entry counts, even compressed (``plugins/event_compression.py``). Events
are yielded, never outputs, so that one step can cover many runs (single-run backfills)
and each run's partition gets exactly its own status.
"""
from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import numpy as np

from context_loader.hdf5_names import SUMMARY_GROUP
from damnit_dagster.execution.process_run import ERROR, NONE, OK, SKIPPED, RunOutcome
from damnit_dagster.plugins.dagster_private import (  # Dagster's provenance tag names
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    NULL_EVENT_POINTER,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
from damnit_dagster.storage.values import PNG_MAGIC

#: The asset check each variable has: did it compute for the run?
CHECK_NAME = "evaluation"
#: ``error_cls`` of the checks of a run that could not be processed at all.
RUN_ERROR = "RunError"


def provenance_tags(code_versions: dict[str, str], name: str, parents: list[str],
                    key_of, inputs: dict | None = None) -> dict[str, str]:
    """Dagster's data-version tags for a materialization of ``name``.

    A variable's data version is its code version, which already folds in the code of
    everything upstream: re-running unchanged code keeps dependents fresh, while editing
    a function makes it and everything downstream stale (and nothing else). ``inputs``
    (from the value's provenance record) gives the data versions of inputs read from
    storage, which may be older than their code.
    """
    tags = {CODE_VERSION_TAG: code_versions[name], DATA_VERSION_TAG: code_versions[name]}
    for parent in parents:
        version = (inputs or {}).get(parent) or code_versions[parent]
        tags[get_input_data_version_tag(key_of(parent))] = version
        tags[get_input_event_pointer_tag(key_of(parent))] = NULL_EVENT_POINTER
    return tags


def summary_metadata(summary, name: str) -> dict:
    """Metadata entries for a stored summary value (as ``damnit.api`` decodes it); for a
    PNG thumbnail, the dataset holding it in the run's HDF5 file."""
    if summary is None:
        return {}
    if isinstance(summary, (bytes, bytearray)):
        if bytes(summary[:8]) == PNG_MAGIC:
            return {"preview": dg.MetadataValue.text(f"/{SUMMARY_GROUP}/{name}")}
        return {"summary": dg.MetadataValue.text(f"<{len(summary)} bytes>")}
    if isinstance(summary, (bool, np.bool_)):
        return {"summary": dg.MetadataValue.bool(bool(summary))}
    if isinstance(summary, (int, np.integer)):
        return {"summary": dg.MetadataValue.int(int(summary))}
    if isinstance(summary, (float, np.floating)):
        return {"summary": dg.MetadataValue.float(float(summary))}
    if isinstance(summary, (complex, np.complexfloating)):
        return {"summary": dg.MetadataValue.text(str(complex(summary)))}
    if isinstance(summary, np.ndarray):   # a trendline or another array summary
        return {"summary": dg.MetadataValue.text(f"array {summary.dtype} {summary.shape}")}
    return {"summary": dg.MetadataValue.text(str(summary))}


def check_evaluation(key: dg.AssetKey, partition: str, status: str, error: str | None,
                     error_cls: str | None) -> dg.AssetCheckEvaluation:
    """The failed ``evaluation`` check of a variable that did not produce a value."""
    failed = status == ERROR
    label = {ERROR: "failed", SKIPPED: "skipped", NONE: "returned None"}.get(status, status)
    description = (f"{label}: {error_cls}: {error}" if error_cls
                   else f"{label}: {error}" if error else label)
    metadata = {}
    if error is not None:
        metadata["error"] = dg.MetadataValue.text(error)
    if error_cls is not None:
        metadata["error_cls"] = dg.MetadataValue.text(error_cls)
    return dg.AssetCheckEvaluation(
        asset_key=key, check_name=CHECK_NAME, passed=False, partition=partition,
        severity=dg.AssetCheckSeverity.ERROR if failed else dg.AssetCheckSeverity.WARN,
        description=description, metadata=metadata)


def events_for_run(outcome: RunOutcome, names: list[str], variables: dict[str, dict],
                   parents: dict[str, list[str]], key_of) -> Iterator:
    """The events for the selected ``names`` (in evaluation order) of one run."""
    partition = str(outcome.run)
    code_versions = {n: v["code_version"] for n, v in variables.items()}
    for name in names:
        key = key_of(name)
        if outcome.error is not None:
            yield check_evaluation(key, partition, ERROR, outcome.error, RUN_ERROR)
            continue
        report = outcome.variables.get(name)
        if report is None:
            reason = ("the run has no proc data" if name in outcome.proc_missing
                      else f"not evaluated (data opened: {outcome.data_opened or 'none'})")
            yield check_evaluation(key, partition, SKIPPED, reason, None)
            continue
        status = report.get("status")
        if status != OK:
            yield check_evaluation(key, partition, status, report.get("error"),
                                   report.get("error_cls"))
            continue
        metadata = summary_metadata(outcome.summaries.get(name), name)
        if outcome.hdf5_path is not None:
            metadata["hdf5"] = dg.MetadataValue.path(str(outcome.hdf5_path))
        if report.get("duration") is not None:
            metadata["duration_s"] = dg.MetadataValue.float(round(float(report["duration"]), 4))
        record = outcome.records.get(name) or {}
        if record.get("source"):   # the rest of the provenance is in the tags and the event
            metadata["data_source"] = dg.MetadataValue.text(record["source"])
        if record.get("host"):
            metadata["host"] = dg.MetadataValue.text(record["host"])
        yield dg.AssetMaterialization(
            asset_key=key, partition=partition, metadata=metadata,
            tags=provenance_tags(code_versions, name, parents.get(name, []), key_of,
                                 record.get("inputs")))
