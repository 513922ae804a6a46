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
