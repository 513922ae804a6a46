"""NYSE trading days (pandas_market_calendars), in America/New_York."""

from __future__ import annotations

import bisect
import datetime as dt
from functools import lru_cache

import pandas as pd
import pandas_market_calendars as mcal

NY = "America/New_York"
FIRST_SESSION = dt.date(2005, 1, 3)


class NotATradingDay(ValueError):
    """The date is a weekend or an NYSE holiday."""


@lru_cache(maxsize=1)
def _nyse():
    return mcal.get_calendar("NYSE")


@lru_cache(maxsize=None)
def _year(year: int) -> pd.DataFrame:
    """The NYSE schedule of one calendar year (computed once per process: building a schedule
    costs ~40 ms whatever its length, and a backtest asks about every day many times)."""
    return _nyse().schedule(start_date=dt.date(year, 1, 1), end_date=dt.date(year, 12, 31))


@lru_cache(maxsize=None)
def _year_days(year: int) -> tuple[tuple[dt.date, ...], frozenset[dt.date]]:
    days = tuple(d.date() for d in _year(year).index)
    return days, frozenset(days)


def _schedule(start: dt.date, end: dt.date) -> pd.DataFrame:
    frames = [_year(y) for y in range(start.year, end.year + 1)]
    sched = frames[0] if len(frames) == 1 else pd.concat(frames)
    return sched.loc[pd.Timestamp(start):pd.Timestamp(end)]


def _to_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a date in YYYY-MM-DD form") from exc


def trading_days(start, end) -> list[dt.date]:
    """NYSE sessions from ``start`` to ``end`` inclusive."""
    start, end = _to_date(start), _to_date(end)
    if end < start:
        return []
    out: list[dt.date] = []
    for year in range(start.year, end.year + 1):
        days = _year_days(year)[0]
        out.extend(days[bisect.bisect_left(days, start):bisect.bisect_right(days, end)])
    return out


def is_trading_day(day) -> bool:
    day = _to_date(day)
    return day in _year_days(day.year)[1]


def require_trading_day(day) -> dt.date:
    day = _to_date(day)
    if not is_trading_day(day):
        raise NotATradingDay(f"{day.isoformat()} is not an NYSE trading day ({day.strftime('%A')})")
    return day


def session_close(day) -> pd.Timestamp:
    """Close of the session (16:00, or 13:00 on half days), tz-aware New York time."""
    day = require_trading_day(day)
    return _year(day.year).at[pd.Timestamp(day), "market_close"].tz_convert(NY)


def session_open(day) -> pd.Timestamp:
    day = require_trading_day(day)
    return _year(day.year).at[pd.Timestamp(day), "market_open"].tz_convert(NY)


def latest_completed_trading_day(now: pd.Timestamp | dt.datetime | None = None) -> dt.date:
    """The most recent session whose close is at or before ``now`` (default: the current time)."""
    now = pd.Timestamp.now(tz=NY) if now is None else pd.Timestamp(now)
    if now.tzinfo is None:
        now = now.tz_localize(NY)
    sched = _schedule(now.date() - dt.timedelta(days=14), now.date())
    done = sched[sched["market_close"] <= now.tz_convert("UTC")]
    return done.index[-1].date()


def previous_trading_day(day) -> dt.date:
    day = _to_date(day)
    days = trading_days(day - dt.timedelta(days=14), day - dt.timedelta(days=1))
    return days[-1]


def next_trading_day(day) -> dt.date:
    day = _to_date(day)
    return trading_days(day + dt.timedelta(days=1), day + dt.timedelta(days=14))[0]


def partition_keys(end: dt.date | None = None) -> list[str]:
    """Daily partition keys: every NYSE session from 2005 through ``end`` (default: today in New York)."""
    end = end or pd.Timestamp.now(tz=NY).date()
    return [d.isoformat() for d in trading_days(FIRST_SESSION, end)]
