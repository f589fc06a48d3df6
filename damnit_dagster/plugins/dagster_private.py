"""Every private Dagster name (``dagster._*``) this project relies on, in one place.

Dagster promises nothing about its private modules; we pin it below the next minor and
import them only through this module, so that an upgrade that moves one breaks here,
loudly: ``tests/plugins/test_dagster_private.py`` resolves every name and checks the
internals the plug-ins override or patch. Names are imported on first use (PEP 562), so a
process pays only for those it touches (the daemon's and the run worker's modules are
heavy).
"""
from __future__ import annotations

import importlib

#: name -> (module, attribute in it; None for the module itself)
NAMES: dict[str, tuple[str, str | None]] = {
    # run launcher (launcher.py)
    "check": ("dagster._check", None),
    "RunLauncher": ("dagster._core.launcher.base", "RunLauncher"),
    "LaunchRunContext": ("dagster._core.launcher.base", "LaunchRunContext"),
    "CheckRunHealthResult": ("dagster._core.launcher.base", "CheckRunHealthResult"),
    "WorkerStatus": ("dagster._core.launcher.base", "WorkerStatus"),
    "ConfigurableClass": ("dagster._serdes", "ConfigurableClass"),
    "ConfigurableClassData": ("dagster._serdes.config_class", "ConfigurableClassData"),
    "execute_run_command_body": ("dagster._cli.api", "_execute_run_command_body"),
    "capture_interrupts": ("dagster._utils.interrupts", "capture_interrupts"),
    # event log storage (event_storage.py)
    "SqliteEventLogStorage": ("dagster._core.storage.event_log.sqlite.sqlite_event_log",
                              "SqliteEventLogStorage"),
    "SqliteEventLogStorageWatchdog": ("dagster._core.storage.event_log.sqlite.sqlite_event_log",
                                      "SqliteEventLogStorageWatchdog"),
    "INDEX_SHARD_NAME": ("dagster._core.storage.event_log.sqlite.sqlite_event_log",
                         "INDEX_SHARD_NAME"),
    "create_engine": ("dagster._core.storage.sql", "create_engine"),
    # the run-retry daemon's cursors, set before the daemon starts (daemon.py)
    "event_log_consumer": ("dagster._daemon.auto_run_reexecution.event_log_consumer", None),
    # run and schedule storages (pooled_storage.py)
    "SqliteRunStorage": ("dagster._core.storage.runs", "SqliteRunStorage"),
    "SqliteScheduleStorage": ("dagster._core.storage.schedules", "SqliteScheduleStorage"),
    "SQLITE_BUSY_TIMEOUT_SECONDS": ("dagster._core.storage.sqlite", "SQLITE_BUSY_TIMEOUT_SECONDS"),
    # the event log's tables, for retention (retention.py) and batches (event_rows.py)
    "SqlEventLogStorageTable": ("dagster._core.storage.event_log.schema",
                                "SqlEventLogStorageTable"),
    "AssetCheckExecutionsTable": ("dagster._core.storage.event_log.schema",
                                  "AssetCheckExecutionsTable"),
    "AssetKeyTable": ("dagster._core.storage.event_log.schema", "AssetKeyTable"),
    "AssetEventTagsTable": ("dagster._core.storage.event_log.schema", "AssetEventTagsTable"),
    "AssetCheckExecutionRecordStatus": ("dagster._core.storage.asset_check_execution_record",
                                        "AssetCheckExecutionRecordStatus"),
    "datetime_from_timestamp": ("dagster._time", "datetime_from_timestamp"),
    # the daemon's loops (daemon.py)
    "sensor_daemon": ("dagster._daemon.sensor", None),
    "daemon_controller": ("dagster._daemon.controller", None),
    "dagster_daemon_main": ("dagster._daemon.cli", "main"),
    # waking the sensor, run-queue and backfill loops (wakeup.py)
    "daemon_classes": ("dagster._daemon.daemon", None),
    "BackfillDaemon": ("dagster._daemon.daemon", "BackfillDaemon"),
    "QueuedRunCoordinatorDaemon": ("dagster._daemon.run_coordinator.queued_run_coordinator_daemon",
                                   "QueuedRunCoordinatorDaemon"),
    "QueuedRunCoordinator": ("dagster._core.run_coordinator.queued_run_coordinator",
                             "QueuedRunCoordinator"),
    "SpanMarker": ("dagster._daemon.daemon", "SpanMarker"),
    "serializable_error_info": ("dagster._utils.error", "serializable_error_info_from_exc_info"),
    # backfills and runs made by reprocess (reprocess/)
    "PartitionBackfill": ("dagster._core.execution.backfill", "PartitionBackfill"),
    "BULK_ACTION_TERMINAL_STATUSES": ("dagster._core.execution.backfill",
                                      "BULK_ACTION_TERMINAL_STATUSES"),
    "BulkActionStatus": ("dagster._core.execution.backfill", "BulkActionStatus"),
    "BACKFILL_ID_TAG": ("dagster._core.storage.tags", "BACKFILL_ID_TAG"),
    "ASSET_PARTITION_RANGE_START_TAG": ("dagster._core.storage.tags",
                                        "ASSET_PARTITION_RANGE_START_TAG"),
    "ASSET_PARTITION_RANGE_END_TAG": ("dagster._core.storage.tags",
                                      "ASSET_PARTITION_RANGE_END_TAG"),
    "make_new_backfill_id": ("dagster._core.utils", "make_new_backfill_id"),
    "make_new_run_id": ("dagster._core.utils", "make_new_run_id"),
    # the provenance tags of materialisations (defs/outcomes.py)
    "CODE_VERSION_TAG": ("dagster._core.definitions.data_version", "CODE_VERSION_TAG"),
    "DATA_VERSION_TAG": ("dagster._core.definitions.data_version", "DATA_VERSION_TAG"),
    "NULL_EVENT_POINTER": ("dagster._core.definitions.data_version", "NULL_EVENT_POINTER"),
    "get_input_data_version_tag": ("dagster._core.definitions.data_version",
                                   "get_input_data_version_tag"),
    "get_input_event_pointer_tag": ("dagster._core.definitions.data_version",
                                    "get_input_event_pointer_tag"),
    # the UI's stale marks, which reprocess --stale must agree with (tests)
    "get_stale_status_resolver": ("dagster._utils.test.data_versions",
                                  "get_stale_status_resolver"),
    "StaleStatus": ("dagster._core.definitions.data_version", "StaleStatus"),
    # sensor ticks, read by tests and benchmarks
    "InstigatorType": ("dagster._core.definitions.run_request", "InstigatorType"),
}


def __getattr__(name: str):
    try:
        module, attribute = NAMES[name]
    except KeyError:
        raise AttributeError(f"{__name__} has no {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(NAMES)
