"""Schedules and sensors: the daily run's schedule, the intraday risk check and run-failure alerts."""

from .intraday import intraday_risk_sensor, position_adjustment_sensor, run_failure_alert_sensor
from .schedules import daily_run_schedule

__all__ = ["daily_run_schedule", "intraday_risk_sensor", "position_adjustment_sensor", "run_failure_alert_sensor"]
