import numpy as np
import pytest

from optrader_pipelines.pricing import IV_STATUS, bsm_greeks, bsm_price_numpy, implied_vol

ql = pytest.importorskip("QuantLib")


def _quantlib(S, K, T, r, q, sigma, is_call):
    today = ql.Date(2, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    days = int(round(T * 365))
    expiry = today + days
    dc = ql.Actual365Fixed()
    spot = ql.QuoteHandle(ql.SimpleQuote(S))
    rts = ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc))
    qts = ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc))
    vts = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), sigma, dc))
    process = ql.BlackScholesMertonProcess(spot, qts, rts, vts)
    opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, K),
                           ql.EuropeanExercise(expiry))
    opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return days / 365.0, opt.NPV(), opt.delta(), opt.gamma(), opt.vega(), opt.rho()


def test_prices_and_greeks_match_quantlib():
    rng = np.random.default_rng(1)
    for _ in range(40):
        S, K = 100.0, float(rng.uniform(60, 150))
        T, r, q = float(rng.uniform(0.02, 2.0)), float(rng.uniform(0, 0.06)), float(rng.uniform(0, 0.03))
        sigma, call = float(rng.uniform(0.05, 1.0)), bool(rng.random() < 0.5)
        T, price, delta, gamma, vega, rho = _quantlib(S, K, T, r, q, sigma, call)
        g = bsm_greeks(S, K, T, r, q, sigma, call)
        floor = 1e-12 * S
        assert abs(g["price"][0] - price) <= 1e-10 * max(price, floor) + floor
        assert g["delta"][0] == pytest.approx(delta, rel=1e-9, abs=1e-12)
        assert g["gamma"][0] == pytest.approx(gamma, rel=1e-9, abs=1e-12)
        assert g["vega"][0] == pytest.approx(vega, rel=1e-9, abs=1e-10)
        assert g["rho"][0] == pytest.approx(rho, rel=1e-9, abs=1e-10)


def test_implied_vol_round_trip_on_a_grid():
    S = 100.0
    K, T, sig = np.meshgrid([40.0, 80.0, 100.0, 120.0, 250.0], [1 / 365, 0.25, 3.0], [0.01, 0.2, 1.0, 5.0])
    K, T, sig = K.ravel(), T.ravel(), sig.ravel()
    for call in (True, False):
        price = bsm_price_numpy(S, K, T, 0.03, 0.01, sig, call)
        vega = bsm_greeks(S, K, T, 0.03, 0.01, sig, call)["vega"]
        iv, status = implied_vol(price, S, K, T, 0.03, 0.01, call)
        material = vega >= 1e-3 * S * np.sqrt(T)
        assert material.sum() > 10
        assert np.all(status[material] == 0)
        assert np.max(np.abs(iv[material] - sig[material])) < 1e-9


def test_bad_inputs_give_nan_with_status_and_do_not_poison_neighbours():
    price = np.array([10.0, np.nan, -1.0, 0.5, 200.0, 10.0, 10.0])
    K = np.array([100.0, 100.0, 100.0, 100.0, 100.0, -5.0, 100.0])
    T = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    iv, status = implied_vol(price, 100.0, K, T, 0.01, 0.0, True)
    assert np.isfinite(iv[0]) and status[0] == 0
    assert [IV_STATUS[s] for s in status[1:]] == [
        "invalid input", "invalid input", "below intrinsic", "above upper bound", "invalid input", "invalid input"]
    assert np.all(np.isnan(iv[1:]))
    g = bsm_greeks(100.0, [100.0, 100.0], [1.0, 1.0], 0.01, 0.0, [0.2, -0.2], True)
    assert np.isfinite(g["delta"][0]) and np.isnan(g["delta"][1])
