"""The daily ``retention`` schedule: trims the folder's Dagster instance.

Its job ``trim_instance`` runs :func:`damnit_dagster.plugins.retention.trim` with the
folder's ``retention_days`` setting (``never`` turns it off): Dagster runs older than that
lose their logs, or are deleted once superseded, while every run number keeps its latest
value, check and staleness in the UI. It can also be launched by hand from the UI.
"""
import dagster as dg

from damnit_dagster.defs.resources import DamnitFolder
from damnit_dagster.plugins.retention import trim
from damnit_dagster.storage.settings import retention_days

JOB_NAME = "trim_instance"


@dg.op(description="Trim Dagster runs older than the retention_days setting.")
def trim_old_runs(context: dg.OpExecutionContext, damnit: DamnitFolder) -> None:
    days = retention_days(damnit.setting("retention_days"))
    if days is None:
        context.log.info("retention_days is 'never': nothing trimmed")
        return
    context.log.info(f"Dagster runs older than {days:g} days: {trim(context.instance, days)}")


@dg.job(name=JOB_NAME, description="Trim the Dagster instance: runs older than "
        "retention_days lose their logs; each run number's latest state stays.")
def trim_instance():
    trim_old_runs()


retention_schedule = dg.ScheduleDefinition(
    name="retention", job=trim_instance, cron_schedule="17 4 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: trim Dagster runs older than the folder's retention_days setting.")
