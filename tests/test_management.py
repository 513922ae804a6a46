"""Position management rules (each fires at its threshold and not before), rolls, and the paper
broker's closing orders."""

import datetime as dt
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from optrader_pipelines.broker import OrderRequest, PaperBroker
from optrader_pipelines.management import ManagementRules, RuleBook, evaluate_book, evaluate_position
from optrader_pipelines.portfolio import mark_positions
from optrader_pipelines.storage import Warehouse
from optrader_pipelines.strategies import build_candidates

from .conftest import DAY

EXP = "2026-12-31"
PUT_SPREAD = json.dumps([{"expiration": EXP, "strike": 95.0, "option_type": "P", "side": -1},
                         {"expiration": EXP, "strike": 90.0, "option_type": "P", "side": 1}])
NO_QUOTES = pd.DataFrame(columns=["delta", "bid", "ask", "mid"],
                         index=pd.MultiIndex.from_tuples([], names=["underlying", "_exp", "strike", "option_type"]))


def _pos(pnl, entry=1.00, max_profit=100.0, max_loss=400.0, expiration=EXP, legs=PUT_SPREAD):
    return SimpleNamespace(position_id="p1", underlying="XYZ", strategy="bull_put_credit", expiration=expiration,
                           quantity=1, entry_price=entry, max_profit=max_profit, max_loss=max_loss, legs=legs,
                           unrealized_pnl=pnl)


def _quotes(delta):
    idx = pd.MultiIndex.from_tuples([("XYZ", EXP, 95.0, "P"), ("XYZ", EXP, 90.0, "P")],
                                    names=["underlying", "_exp", "strike", "option_type"])
    return pd.DataFrame({"delta": [delta, -0.1], "bid": [1.0, 0.4], "ask": [1.1, 0.5], "mid": [1.05, 0.45]}, index=idx)


RULES = ManagementRules()


def test_profit_target_fires_at_half_the_max_profit_not_a_cent_before():
    assert evaluate_position(_pos(49.99), DAY, RULES, NO_QUOTES, 100.0).action == "hold"
    d = evaluate_position(_pos(50.00), DAY, RULES, NO_QUOTES, 100.0)
    assert (d.action, d.rule, d.threshold) == ("close", "profit_target", 50.0)
    assert "50% of the max profit" in d.reason


def test_stop_loss_fires_at_twice_the_credit_for_credit_spreads():
    assert evaluate_position(_pos(-199.99), DAY, RULES, NO_QUOTES, 100.0).action == "hold"
    d = evaluate_position(_pos(-200.00), DAY, RULES, NO_QUOTES, 100.0)
    assert (d.action, d.rule, d.threshold) == ("close", "stop_loss", 200.0)
    # configurable: 1.5x the credit
    assert evaluate_position(_pos(-150.0), DAY, ManagementRules(stop_loss_credit_multiple=1.5), NO_QUOTES,
                             100.0).rule == "stop_loss"


def test_stop_loss_fires_at_half_the_max_loss_for_debit_spreads():
    debit = dict(entry=-2.00, max_profit=300.0, max_loss=200.0)
    assert evaluate_position(_pos(-99.99, **debit), DAY, RULES, NO_QUOTES, 100.0).action == "hold"
    d = evaluate_position(_pos(-100.00, **debit), DAY, RULES, NO_QUOTES, 100.0)
    assert (d.action, d.rule, d.threshold) == ("close", "stop_loss", 100.0)


def test_time_exit_fires_at_21_days_not_22():
    day22 = dt.date(2026, 12, 31) - dt.timedelta(days=22)
    assert evaluate_position(_pos(0.0), day22, RULES, NO_QUOTES, 100.0).action == "hold"
    d = evaluate_position(_pos(0.0), day22 + dt.timedelta(days=1), RULES, NO_QUOTES, 100.0)
    assert (d.action, d.rule, d.value) == ("close", "time_exit", 21.0)
    # at expiration the broker settles: no closing order
    assert evaluate_position(_pos(0.0), dt.date(2026, 12, 31), RULES, NO_QUOTES, 100.0).action == "hold"


def test_tested_short_strike_by_delta_or_in_the_money():
    assert evaluate_position(_pos(0.0), DAY, RULES, _quotes(-0.3999), 100.0).action == "hold"
    d = evaluate_position(_pos(0.0), DAY, RULES, _quotes(-0.40), 100.0)
    assert (d.action, d.rule) == ("roll", "tested") and "delta -0.40" in d.reason
    d = evaluate_position(_pos(0.0), DAY, RULES, _quotes(-0.2), 94.99)
    assert d.action == "roll" and "in the money" in d.reason
    assert evaluate_position(_pos(0.0), DAY, ManagementRules(roll=False), _quotes(-0.5), 100.0).action == "close"
    # rules apply in order: a stop loss outranks a tested strike
    assert evaluate_position(_pos(-200.0), DAY, RULES, _quotes(-0.5), 94.0).rule == "stop_loss"


def test_rules_are_validated_and_per_strategy():
    with pytest.raises(ValueError, match="profit_target"):
        ManagementRules(profit_target=1.5)
    book = RuleBook.from_overrides({"dte_exit": 14}, {"iron_condor": {"profit_target": 0.25}})
    assert book.for_strategy("iron_condor").profit_target == 0.25
    assert book.for_strategy("iron_condor").dte_exit == 14
    assert book.for_strategy("bull_put_credit").profit_target == 0.5


@pytest.fixture()
def book_with_spread(tmp_path, small_greeks):
    """A paper account holding one bull put credit spread opened on DAY from the day's candidates."""
    cands = build_candidates(small_greeks)
    puts = cands[cands["strategy"] == "bull_put_credit"]
    exp = pd.to_datetime(puts["expiration"])
    near = puts[exp == exp.min()].sort_values("short_delta")  # the most tested (most negative delta) first

    def rollable(c):  # a later spread, no wider than 1.5x, less tested, for more credit than closing costs
        later = puts[(puts["underlying"] == c["underlying"]) & (exp >= exp.min() + pd.Timedelta(days=7))
                     & (puts["width"] <= 1.5 * c["width"]) & (puts["short_delta"].abs() < abs(c["short_delta"]))]
        return (later["entry_price"] >= c["mid_price"]).any()

    c = next(r for _, r in near.iterrows() if rollable(r))
    broker = PaperBroker(Warehouse(tmp_path / "wh.duckdb"), fill_fraction=0.0)
    legs = json.loads(c["legs"])
    g = small_greeks.assign(_exp=pd.to_datetime(small_greeks["expiration"]).dt.strftime("%Y-%m-%d"))
    q = g.set_index(["underlying", "_exp", "strike", "option_type"])
    for leg in legs:
        row = q.loc[(c["underlying"], leg["expiration"], float(leg["strike"]), leg["option_type"])]
        leg["bid"], leg["ask"] = float(row["bid"]), float(row["ask"])
    res = broker.place_order(OrderRequest("open-1", "paper", DAY, c["strategy"], c["underlying"],
                                          pd.Timestamp(c["expiration"]).date(), c["settlement"], "credit", legs, 1,
                                          round(float(c["mid_price"]), 2)))
    assert res.status == "filled"
    return broker, c, cands


def test_roll_into_a_later_untested_spread_for_a_net_credit(book_with_spread, small_greeks):
    broker, c, cands = book_with_spread
    marked = mark_positions(broker.open_positions(DAY), small_greeks)
    threshold = abs(float(c["short_delta"]))
    rules = RuleBook(ManagementRules(tested_delta=threshold, profit_target=1.0, stop_loss_credit_multiple=50.0,
                                     dte_exit=0))
    d = evaluate_book(marked, small_greeks, DAY, rules, cands).iloc[0]
    assert d["rule"] == "tested"
    assert d["action"] == "roll", d["reason"]
    new = cands.set_index("candidate_id").loc[d["roll_candidate_id"]]
    assert new["underlying"] == c["underlying"] and new["strategy"] == c["strategy"]
    assert new["width"] <= 1.5 * c["width"] + 1e-9
    assert pd.Timestamp(new["expiration"]) >= pd.Timestamp(c["expiration"]) + pd.Timedelta(days=7)
    assert abs(new["short_delta"]) < threshold
    assert d["roll_net_credit"] >= 0 and "net credit" in d["reason"]
    # a roll that must bring more credit than any later spread offers becomes a close, with the reason
    greedy = RuleBook(ManagementRules(tested_delta=threshold, profit_target=1.0, stop_loss_credit_multiple=50.0,
                                      dte_exit=0, roll_min_net_credit=1e6))
    d = evaluate_book(marked, small_greeks, DAY, greedy, cands).iloc[0]
    assert d["action"] == "close" and "closing instead" in d["reason"]


def test_closing_order_is_idempotent_and_books_the_pnl(book_with_spread, small_greeks):
    broker, c, _ = book_with_spread
    pid = broker.open_positions(DAY)["position_id"].iloc[0]
    g = small_greeks.assign(exp=pd.to_datetime(small_greeks["expiration"]).dt.strftime("%Y-%m-%d"))
    g = g[g["underlying"] == c["underlying"]]
    quotes = {(r.exp, float(r.strike), r.option_type): (float(r.bid), float(r.ask)) for r in g.itertuples()}
    cash_before = broker.cash(DAY)
    first = broker.close_position(pid, DAY, quotes, "profit_target: test", "close-key")
    again = broker.close_position(pid, DAY, quotes, "profit_target: test", "close-key")
    assert first.status == "filled" and again.already_placed and again.order_id == first.order_id
    assert broker.open_positions(DAY).empty
    closes = broker.orders(DAY)
    assert (closes["action"] == "close").sum() == 1
    # fill fraction 0: closes at the mid; cash moves by the closing debit and commission, once
    legs = json.loads(c["legs"])
    mid = sum(int(leg["side"]) * np.mean(quotes[(leg["expiration"], float(leg["strike"]), leg["option_type"])])
              for leg in legs)
    assert first.fill_price == pytest.approx(round(-mid, 2), abs=1e-9)
    assert broker.cash(DAY) - cash_before == pytest.approx(-first.fill_price * 100 - 2 * 0.65, abs=1e-6)
    pos = broker.wh.query("SELECT * FROM positions WHERE position_id = ?", [pid]).iloc[0]
    assert pos["realized_pnl"] == pytest.approx(round((pos["entry_price"] - first.fill_price) * 100, 2))
    assert pos["close_reason"] == "profit_target: test"
    with pytest.raises(ValueError, match="already closed"):
        broker.close_position(pid, DAY, quotes, "again", "another-key")
