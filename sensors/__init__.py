"""Schedules and sensors: when the daily run happens (intraday sensors come with their issue)."""

from .schedules import daily_run_schedule

__all__ = ["daily_run_schedule"]
