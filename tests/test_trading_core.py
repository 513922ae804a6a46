import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from optrader_pipelines.broker import OrderRequest, PaperBroker
from optrader_pipelines.risk import (
    PROFILES,
    BookState,
    UndefinedRisk,
    check_signals,
    max_loss_per_spread,
)
from optrader_pipelines.signals import RankingConfig, rank_signals
from optrader_pipelines.storage import Warehouse
from optrader_pipelines.strategies import build_candidates

from .conftest import DAY


@pytest.fixture(scope="module")
def candidates(small_greeks):
    return build_candidates(small_greeks)


def test_candidates_have_consistent_payoffs(candidates):
    assert set(candidates["strategy"]) >= {"bull_put_credit", "bear_call_credit", "bull_call_debit",
                                            "bear_put_debit", "iron_condor"}
    for r in candidates.groupby("strategy").head(20).itertuples():
        legs = json.loads(r.legs)
        cash = r.entry_price if r.direction == "credit" else -r.entry_price
        assert max_loss_per_spread(legs, cash) == pytest.approx(r.max_loss, abs=1e-6)
        assert r.max_profit + r.max_loss == pytest.approx(100 * r.width, abs=1e-6)
        assert 0 <= r.pop <= 1
    condor = candidates[candidates["strategy"] == "iron_condor"].iloc[0]
    assert condor.breakeven_low < condor.underlying_price < condor.breakeven_high
    assert len(json.loads(condor.legs)) == 4


def test_candidate_legs_and_ids_are_the_rows_own_json(candidates):
    """The column-wise legs JSON and candidate id are exactly what the row gives one at a time."""
    for r in candidates.itertuples():
        legs = []
        for kind, otype in (("short_put", "P"), ("long_put", "P"), ("short_call", "C"), ("long_call", "C")):
            k = getattr(r, kind)
            if k == k:
                legs.append({"option_symbol": None, "expiration": pd.Timestamp(r.expiration).date().isoformat(),
                             "strike": float(k), "option_type": otype, "side": -1 if kind.startswith("short") else 1})
        got = json.loads(r.legs)
        for leg, g in zip(legs, got):
            leg["option_symbol"] = g["option_symbol"]
            assert g["option_symbol"].startswith(g["option_symbol"][:6]) and len(g["option_symbol"]) == 21
            assert g["option_symbol"][6:12] == pd.Timestamp(r.expiration).strftime("%y%m%d")
            assert g["option_symbol"][12] == leg["option_type"]
            assert int(g["option_symbol"][13:]) == round(leg["strike"] * 1000)
        assert r.legs == json.dumps(legs, sort_keys=True)
        strikes = "/".join(str(round(float(getattr(r, c)), 4)) for c in ("long_put", "short_put", "short_call", "long_call"))
        assert r.candidate_id == f"{r.underlying}|{pd.Timestamp(r.expiration):%Y-%m-%d}|{r.strategy}|{strikes}"


def test_pop_is_the_lognormal_probability_beyond_breakeven(candidates, small_greeks):
    from scipy.stats import norm

    c = candidates[candidates["strategy"] == "bull_put_credit"].iloc[0]
    row = small_greeks[(small_greeks["underlying"] == c["underlying"])
                       & (small_greeks["expiration"] == c["expiration"])].iloc[0]
    T = c["dte"] / 365.0
    F = c["underlying_price"] * np.exp((row["rate"] - row["carry_yield"]) * T)
    st = c["atm_iv"] * np.sqrt(T)
    expected = norm.cdf((np.log(F / c["breakeven_low"]) - 0.5 * st * st) / st)
    assert c["pop"] == pytest.approx(expected, rel=1e-9)
    assert c["breakeven_low"] == pytest.approx(c["short_put"] - c["entry_price"])


def test_naked_short_call_is_undefined_risk():
    legs = [{"expiration": "2026-12-18", "strike": 100.0, "option_type": "C", "side": -1}]
    with pytest.raises(UndefinedRisk, match="unbounded"):
        max_loss_per_spread(legs, 2.0)
    put_spread = [{"expiration": "2026-12-18", "strike": 100.0, "option_type": "P", "side": -1},
                  {"expiration": "2026-12-18", "strike": 95.0, "option_type": "P", "side": 1}]
    assert max_loss_per_spread(put_spread, 1.25) == pytest.approx(375.0)


def test_ranking_keeps_one_per_underlying_with_reasons(candidates):
    signals, excluded = rank_signals(candidates, DAY, RankingConfig(top_n=3))
    assert len(signals) == 3 and signals["underlying"].is_unique
    assert list(signals["rank"]) == [1, 2, 3]
    assert (signals["expected_value"] > 0).all() and signals["score"].is_monotonic_decreasing
    assert signals["reasons"].str.contains("probability of profit").all()
    assert excluded["count"].sum() + len(signals) == len(candidates)


def _book(cash=5000.0, nlv=5000.0, peak=5000.0, prev=5000.0, positions=None):
    cols = ["position_id", "underlying", "strategy", "expiration", "max_loss", "collateral", "quantity"]
    return BookState("paper", cash, nlv, peak, prev, positions if positions is not None else pd.DataFrame(columns=cols))


def _signal(candidates, **over):
    s = rank_signals(candidates, DAY, RankingConfig(top_n=4, max_risk_per_contract=225))[0]
    for k, v in over.items():
        s[k] = v
    return s


def test_small_account_sizing_and_halts(candidates):
    sig = _signal(candidates)
    ok = check_signals(sig, _book(), PROFILES["small_account"], "moderate", DAY)
    assert (ok["status"] == "accepted").all()
    assert (ok["total_risk"] <= 225 + 1e-9).all() and (ok["total_risk"] >= 50).all()
    # 15% below peak: no new entries
    dd = check_signals(sig, _book(nlv=4200, prev=4200, peak=5000), PROFILES["small_account"], "moderate", DAY)
    assert (dd["status"] == "rejected").all() and dd["reason"].str.startswith("halted: drawdown").all()
    # 10% daily loss
    dl = check_signals(sig, _book(nlv=4490, prev=5000, peak=5000), PROFILES["small_account"], "high", DAY)
    assert dl["reason"].str.startswith("halted: daily loss").all()
    # cash buffer: only $250 of buying power
    poor = check_signals(sig, _book(cash=250, nlv=250, peak=250, prev=250), PROFILES["small_account"], "moderate", DAY)
    assert poor["status"].eq("accepted").sum() <= 1
    assert poor[poor["status"] == "rejected"]["reason"].str.contains("insufficient buying power").all()


def test_undefined_risk_signal_is_rejected(candidates):
    sig = _signal(candidates).head(1).copy()
    sig["legs"] = json.dumps([{"option_symbol": "X", "expiration": "2026-12-18", "strike": 100.0,
                               "option_type": "C", "side": -1}])
    out = check_signals(sig, _book(), PROFILES["moderate"], "high", DAY)
    assert out["status"].iloc[0] == "rejected" and out["reason"].iloc[0].startswith("undefined risk")


def test_paper_broker_is_idempotent_and_settles(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    broker = PaperBroker(wh, "paper", fill_fraction=0.5, commission_per_contract=0.65, starting_cash=1000)
    legs = [{"option_symbol": "P100", "expiration": "2026-12-18", "strike": 100.0, "option_type": "P", "side": -1,
             "bid": 2.00, "ask": 2.20},
            {"option_symbol": "P95", "expiration": "2026-12-18", "strike": 95.0, "option_type": "P", "side": 1,
             "bid": 0.80, "ask": 0.90}]
    # mid credit 1.25, natural 1.10, modelled fill at f=0.5: 1.175
    req = OrderRequest("key-1", "paper", DAY, "bull_put_credit", "XYZ", dt.date(2026, 12, 18), "physical",
                       "credit", legs, 2, 1.17)
    first = broker.place_order(req)
    assert first.status == "filled" and first.fill_price == 1.17
    assert first.cash_flow == pytest.approx(2 * 117 - 2 * 2 * 0.65)
    again = broker.place_order(req)
    assert again.already_placed and again.order_id == first.order_id
    assert len(broker.orders()) == 1 and len(broker.open_positions(DAY)) == 1
    assert broker.cash(DAY) == pytest.approx(1000 + first.cash_flow)
    too_greedy = broker.place_order(OrderRequest("key-2", "paper", DAY, "bull_put_credit", "XYZ",
                                                 dt.date(2026, 12, 18), "physical", "credit", legs, 1, 1.20))
    assert too_greedy.status == "unfilled"
    # expiration with the underlying at 97: the short 100 put is 3 in the money, long 95 worthless
    settled = broker.settle_expirations(dt.date(2026, 12, 18), {"XYZ": 97.0})
    assert settled["settlement_value"].iloc[0] == pytest.approx(-600.0)
    assert settled["realized_pnl"].iloc[0] == pytest.approx(-600.0 + 234.0)
    assert broker.settle_expirations(dt.date(2026, 12, 18), {"XYZ": 97.0}).empty  # idempotent
    assert broker.open_positions(dt.date(2026, 12, 18)).empty
    assert len(broker.open_positions(dt.date(2026, 12, 17))) == 1  # as-of history is kept
    assert broker.cash(dt.date(2026, 12, 18)) == pytest.approx(1000 + first.cash_flow - 600)


def test_replace_day_is_atomic_and_never_duplicates(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    wh.replace_day("t", DAY, df, "run-1")
    wh.replace_day("t", DAY, df, "run-2")
    wh.replace_day("t", dt.date(2026, 11, 19), df.head(1), "run-3")
    assert wh.count("t", DAY) == 3 and wh.count("t") == 4
    assert set(wh.query("SELECT run_id FROM t WHERE trade_date = ?", [DAY])["run_id"]) == {"run-2"}
    bad = pd.DataFrame({"a": ["not a number"], "b": ["q"]})
    with pytest.raises(Exception):
        wh.replace_day("t", DAY, bad, "run-4")
    assert wh.count("t", DAY) == 3  # the failed write left the day as it was
    assert set(wh.query("SELECT run_id FROM t WHERE trade_date = ?", [DAY])["run_id"]) == {"run-2"}
    np.testing.assert_array_equal(wh.read_day("t", DAY)["a"].to_numpy(), [1, 2, 3])


def test_ranking_leaves_out_entries_inside_the_time_exit_and_may_be_empty(candidates):
    from optrader_pipelines.validation import RankedSignalsSchema

    cfg = RankingConfig(time_exit_dte=(("bull_put_credit", 30),))
    signals, excluded = rank_signals(candidates, DAY, cfg)
    assert not ((signals["strategy"] == "bull_put_credit") & (signals["dte"] <= 30)).any()
    n = int(excluded.set_index("reason").loc["inside the time exit of the management rules", "count"])
    assert n > 0
    everything = RankingConfig(time_exit_dte=tuple((s, 1000) for s in set(candidates["strategy"])))
    empty, _ = rank_signals(candidates, DAY, everything)
    assert empty.empty
    RankedSignalsSchema.validate(empty)  # a day with no signal is a valid, empty table


def test_strategy_momentum_weighs_the_ranking_and_drops_losing_strategies(candidates):
    import datetime as dt

    from optrader_pipelines.momentum import momentum_score, strategy_momentum

    closed = pd.DataFrame({"strategy": ["iron_condor", "iron_condor", "bull_put_credit", "bear_call_credit"],
                           "closed_date": pd.to_datetime(["2026-10-01", "2026-11-19", "2026-11-10", "2026-07-01"]),
                           "realized_pnl": [60.0, -20.0, -50.0, 500.0], "max_loss": [200.0, 200.0, 300.0, 300.0]})
    mom = strategy_momentum(closed, DAY).set_index("strategy")
    assert mom.loc["iron_condor", "momentum"] == pytest.approx(40 / 400) and mom.loc["iron_condor", "trades"] == 2
    assert mom.loc["bull_put_credit", "momentum"] < 0
    assert "bear_call_credit" not in mom.index  # closed more than three months ago
    # no peeking: a trade closed on the day being decided does not count
    assert strategy_momentum(closed, dt.date(2026, 11, 19)).set_index("strategy").loc["iron_condor", "trades"] == 1
    assert momentum_score([0.0, np.nan])[0] == 0.5 and momentum_score([np.nan])[0] == 0.5
    cfg = RankingConfig(top_n=10, momentum=tuple(mom["momentum"].items()))
    signals, excluded = rank_signals(candidates, DAY, cfg)
    assert "bull_put_credit" not in set(signals["strategy"])
    assert excluded.set_index("reason").loc["strategy momentum not positive", "count"] > 0
    expected = 0.5 * signals["confidence"] + 0.5 * momentum_score(signals["momentum"])
    assert np.allclose(signals["priority"], expected) and signals["priority"].is_monotonic_decreasing
    condor = signals[signals["strategy"] == "iron_condor"]
    assert len(condor) == 0 or "iron_condor momentum +10.0% of risk" in condor["reasons"].iloc[0]
