"""Daily partitions on NYSE trading days (America/New_York): weekdays minus NYSE holidays."""


import datetime as dt

import dagster as dg
import pandas as pd

from optrader_pipelines import calendar as cal


def _holidays(end_year: int = 2036) -> list[dt.datetime]:
    sessions = set(cal.trading_days(cal.FIRST_SESSION, dt.date(end_year, 12, 31)))
    weekdays = pd.bdate_range(cal.FIRST_SESSION, dt.date(end_year, 12, 31)).date
    return [dt.datetime(d.year, d.month, d.day) for d in weekdays if d not in sessions]


# end_offset=1 makes today's session a partition from midnight; assets refuse it until the close.
trading_day_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    start=cal.FIRST_SESSION.isoformat(),
    fmt="%Y-%m-%d",
    timezone=cal.NY,
    end_offset=1,
    exclusions=_holidays(),
)
