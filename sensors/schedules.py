"""``daily_run_schedule``: 16:30 New York, Monday to Friday; skips NYSE holidays with a reason."""


from zoneinfo import ZoneInfo

import dagster as dg

from optrader_pipelines import calendar as cal


@dg.schedule(
    name="daily_run_schedule",
    job_name="daily_run_job",
    cron_schedule="30 16 * * 1-5",
    execution_timezone=cal.NY,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Runs the daily graph for the session that just closed, at 16:30 New York on NYSE trading days.",
)
def daily_run_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(ZoneInfo(cal.NY)).date()
    if not cal.is_trading_day(day):
        return dg.SkipReason(f"{day.isoformat()} is not an NYSE trading day: no daily run")
    key = day.isoformat()
    return dg.RunRequest(run_key=key, partition_key=key, tags={"optrader/trigger": "schedule"})
