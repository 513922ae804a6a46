import datetime as dt

import pandas as pd
import pytest

from optrader_pipelines import calendar as cal


def test_holidays_and_weekends_are_not_trading_days():
    assert cal.is_trading_day(dt.date(2026, 11, 20))
    assert not cal.is_trading_day(dt.date(2026, 11, 26))  # Thanksgiving
    assert not cal.is_trading_day(dt.date(2026, 11, 21))  # Saturday
    assert not cal.is_trading_day(dt.date(2025, 1, 9))  # national day of mourning
    with pytest.raises(cal.NotATradingDay, match="2026-11-26 is not an NYSE trading day"):
        cal.require_trading_day("2026-11-26")


def test_latest_completed_trading_day_respects_the_close_and_half_days():
    ny = cal.NY
    assert cal.latest_completed_trading_day(pd.Timestamp("2026-11-20 15:59", tz=ny)) == dt.date(2026, 11, 19)
    assert cal.latest_completed_trading_day(pd.Timestamp("2026-11-20 16:00", tz=ny)) == dt.date(2026, 11, 20)
    assert cal.latest_completed_trading_day(pd.Timestamp("2026-11-22 09:00", tz=ny)) == dt.date(2026, 11, 20)
    # the day after Thanksgiving closes at 13:00
    assert cal.session_close(dt.date(2026, 11, 27)).hour == 13
    assert cal.latest_completed_trading_day(pd.Timestamp("2026-11-27 13:30", tz=ny)) == dt.date(2026, 11, 27)


def test_next_and_previous_sessions_skip_holidays():
    assert cal.next_trading_day(dt.date(2026, 11, 25)) == dt.date(2026, 11, 27)
    assert cal.previous_trading_day(dt.date(2026, 11, 27)) == dt.date(2026, 11, 25)


def test_the_per_year_cache_answers_as_the_exchange_calendar_does():
    import pandas_market_calendars as mcal

    sched = mcal.get_calendar("NYSE").schedule(start_date="2017-12-01", end_date="2019-01-31")
    days = [d.date() for d in sched.index]
    assert cal.trading_days(dt.date(2017, 12, 1), dt.date(2019, 1, 31)) == days  # across two year ends
    for d in (dt.date(2018, 11, 23), dt.date(2018, 12, 24), dt.date(2018, 12, 31)):  # half days and a year end
        assert cal.session_close(d) == sched.loc[str(d), "market_close"].tz_convert(cal.NY)
        assert cal.session_open(d) == sched.loc[str(d), "market_open"].tz_convert(cal.NY)
    assert not cal.is_trading_day(dt.date(2018, 12, 5))  # closed for President Bush's funeral
    assert cal.previous_trading_day(dt.date(2019, 1, 2)) == dt.date(2018, 12, 31)
    assert cal.next_trading_day(dt.date(2018, 12, 31)) == dt.date(2019, 1, 2)
