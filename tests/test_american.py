"""American exercise: the Leisen-Reimer reference tree against QuantLib, and where the
Bjerksund-Stensland 2002 approximation stands against that tree (work in progress: the issue's
1e-3 relative target is not met yet; the bound below is the measured one)."""

import numpy as np
import pytest

from optrader_pipelines.pricing import bsm_price_numpy
from optrader_pipelines.pricing.american import american_price, leisen_reimer_price

ql = pytest.importorskip("QuantLib")


def _contracts(n, seed=5):
    rng = np.random.default_rng(seed)
    T = rng.integers(20, 730, n) / 365.0
    return (np.full(n, 100.0), rng.uniform(80, 120, n), T, rng.uniform(0.0, 0.06, n), rng.uniform(0, 0.04, n),
            rng.uniform(0.1, 0.6, n), rng.random(n) < 0.5)


def test_leisen_reimer_tree_matches_quantlib():
    S, K, T, r, q, sig, call = _contracts(8)
    today = ql.Date(2, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    ours = leisen_reimer_price(S, K, T, r, q, sig, call, steps=2001)
    for i in range(len(S)):
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(S[i])), ql.YieldTermStructureHandle(ql.FlatForward(today, q[i], dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(today, r[i], dc)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), sig[i], dc)))
        opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if call[i] else ql.Option.Put, K[i]),
                               ql.AmericanExercise(today, today + int(round(T[i] * 365))))
        opt.setPricingEngine(ql.BinomialVanillaEngine(process, "lr", 2001))
        assert ours[i] == pytest.approx(opt.NPV(), rel=1e-9)


def test_bjerksund_stensland_is_bounded_by_european_and_close_to_the_tree():
    S, K, T, r, q, sig, call = _contracts(40)
    am = american_price(S, K, T, r, q, sig, call)
    tree = leisen_reimer_price(S, K, T, r, q, sig, call, steps=2001)
    euro = bsm_price_numpy(S, K, T, r, q, sig, call)
    assert np.all(am >= euro - 1e-12) and np.all(am >= np.maximum(np.where(call, S - K, K - S), 0))
    rel = np.abs(am - tree) / tree
    assert np.median(rel) < 3e-3 and rel.max() < 3e-2  # measured: median 1.1e-3, max 2.5e-2
    no_dividend_call = american_price(100.0, 100.0, 1.0, 0.05, 0.0, 0.3, True)[0]
    assert no_dividend_call == pytest.approx(bsm_price_numpy(100.0, 100.0, 1.0, 0.05, 0.0, 0.3, True), rel=1e-12)
