"""American exercise: the fixed-point engine against QuantLib's implementation of the same method
and against a 2,000-step Leisen-Reimer tree (itself checked against QuantLib's); Greeks against
finite differences; American implied volatility round trips; bad inputs."""

import numpy as np
import pytest

from optrader_pipelines.pricing import (american_greeks, american_implied_vol, american_price, bsm_price_numpy,
                                        leisen_reimer_price)

ql = pytest.importorskip("QuantLib")

TODAY = ql.Date(2, 1, 2024)


def _contracts(n, seed=5, days=(20, 730)):
    rng = np.random.default_rng(seed)
    T = rng.integers(*days, n) / 365.0
    return (np.full(n, 100.0), rng.uniform(70, 130, n), T, rng.uniform(0.0, 0.08, n), rng.uniform(0, 0.05, n),
            rng.uniform(0.08, 0.8, n), rng.random(n) < 0.5)


def _put_with(scheme, S, K, T, r, q, sig):
    """American put prices under a fixed-point ``scheme`` (``_qdfp.Scheme``), jitted."""
    import jax

    from optrader_pipelines.pricing import _qdfp

    return np.asarray(jax.jit(lambda *a: _qdfp.american_put(*a, scheme))(S, K, T, r, q, sig))


def _ql_option(S, K, T, r, q, sig, call, engine):
    ql.Settings.instance().evaluationDate = TODAY
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(S)), ql.YieldTermStructureHandle(ql.FlatForward(TODAY, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), sig, dc)))
    opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, K),
                           ql.AmericanExercise(TODAY, TODAY + int(round(T * 365))))
    opt.setPricingEngine(engine(process))
    return opt.NPV()


def test_leisen_reimer_tree_matches_quantlib():
    S, K, T, r, q, sig, call = _contracts(8)
    ours = leisen_reimer_price(S, K, T, r, q, sig, call, steps=2001)
    for i in range(len(S)):
        ref = _ql_option(S[i], K[i], T[i], r[i], q[i], sig[i], call[i],
                         lambda p: ql.BinomialVanillaEngine(p, "lr", 2001))
        assert ours[i] == pytest.approx(ref, rel=1e-9)


def test_fixed_point_engine_is_quantlibs_method():
    S, K, T, r, q, sig, call = _contracts(60, seed=11)
    r = np.maximum(r, 0.005)
    ours = american_price(S, K, T, r, q, sig, call, method="qdfp_quantlib")
    scheme = ql.QdFpAmericanEngine.fastScheme()
    ref = np.array([_ql_option(S[i], K[i], T[i], r[i], q[i], sig[i], call[i],
                               lambda p: ql.QdFpAmericanEngine(p, scheme, ql.QdFpAmericanEngine.FP_B))
                    for i in range(len(S))])
    rel = np.abs(ours - ref) / ref
    # identical arithmetic: agreement to rounding, except where QuantLib's QD+ start falls back
    # from Halley to Brent (low volatility) and lands on a slightly different start (measured 5e-6)
    assert np.median(rel) < 1e-13
    assert np.mean(rel < 1e-10) > 0.9 and rel.max() < 1e-5
    # the engine's own scheme (fewer nodes and points, the QD+ start from the BAW seed) and a
    # still cheaper one stay well inside the 1e-3 goal
    from optrader_pipelines.pricing import _qdfp

    engine = american_price(S, K, T, r, q, sig, call)
    assert np.max(np.abs(engine - ref) / ref) < 2e-4 and np.median(np.abs(engine - ref) / ref) < 1e-5
    cheap = _qdfp.Scheme("cheap", nodes=5, fp_points=4, fp_steps=1, price_points=14, halley_steps=6)
    put = np.where(call, K, S), np.where(call, S, K), np.where(call, q, r), np.where(call, r, q)
    cheap_price = _put_with(cheap, put[0], put[1], T, put[2], put[3], sig)
    cheap_price = np.maximum(cheap_price, bsm_price_numpy(S, K, T, r, q, sig, call))
    assert np.max(np.abs(cheap_price - ref) / ref) < 5e-4


def test_engine_scheme_against_the_method_at_high_precision():
    """The engine's scheme (6 nodes, 4 fixed-point points, 2 steps, 12 premium points) against the
    same method at high precision (12 nodes, 12 points, 5 steps, 48 points; within 2e-6 of 24, 24,
    8 and 96) on harsh random puts (1 day to 3 years, vol 5-100%). Its quadratures are Gauss-Legendre
    in variables where the integrands are smooth (the "smooth" rule); in QuantLib's variables the
    same counts err ten times more, so this also checks that the substitution is what it claims."""
    from optrader_pipelines.pricing import _qdfp

    rng = np.random.default_rng(12)
    n = 400
    S, K, T = np.full(n, 100.0), rng.uniform(60, 140, n), rng.integers(1, 1096, n) / 365
    r, q, sig = rng.uniform(0.001, 0.06, n), rng.uniform(0, 0.04, n), rng.uniform(0.05, 1.0, n)
    put = np.zeros(n, bool)
    european = bsm_price_numpy(S, K, T, r, q, sig, put)

    def priced(scheme):
        return np.maximum(_put_with(scheme, S, K, T, r, q, sig), european)

    high = priced(_qdfp.Scheme("high", 12, 12, 5, 48, 6, start="baw", rule="smooth"))
    material = high >= 1e-4 * S
    assert material.sum() > 300

    def rel(p):
        return np.abs(p - high)[material] / high[material]

    engine = rel(american_price(S, K, T, r, q, sig, put))
    assert np.median(engine) < 3e-6 and engine.max() < 3e-4  # measured: 1.0e-6 and 1.1e-4 (3 FP-B steps: 9e-7, 3.8e-5)
    e = _qdfp.ENGINE
    # (FP-B only: FP-A's integrands have a 1 / sqrt(tau - u) singularity that only the smooth rule
    # resolves; with the plain rule and FP-A: median 3e-4, max 2.8e-2)
    plain = rel(priced(_qdfp.Scheme("plain", e.nodes, e.fp_points, e.fp_steps, e.price_points, e.halley_steps,
                                    start="baw", rule="plain")))
    assert np.median(plain) > 5 * np.median(engine) and plain.max() > 5 * engine.max()  # measured: 1.1e-5, 1e-3


def test_engine_plain_step_is_fp_a_at_low_drift_and_fp_b_at_high_drift_blended_smoothly():
    """The engine's scheme takes one Jacobi-Newton step and one plain step. The plain step solves
    Andersen-Lake-Offengeld's FP-A equation where the drift (r - q) sqrt(T) / sigma is below 1.3
    (it converges faster than FP-B: one FP-A step does what two FP-B steps did) and FP-B above 1.4
    (where FP-A's peaked integrands defeat 4 quadrature points), blended between. Checked against
    the method at high precision on low-vol puts (vol 1.5-15%, rates 3-6%) on both sides, and the
    blend for a continuous price and vega across the ramp (an implied vol always exists there)."""
    from optrader_pipelines.pricing import _qdfp

    rng = np.random.default_rng(3)
    n = 120
    S, K, T = np.full(n, 100.0), rng.uniform(90, 110, n), rng.uniform(1.0, 3.0, n)
    r, q = rng.uniform(0.03, 0.06, n), rng.uniform(0.0, 0.01, n)
    drift = np.concatenate([rng.uniform(0.3, 1.2, n // 2), rng.uniform(1.5, 3.0, n - n // 2)])
    sig = (r - q) * np.sqrt(T) / drift
    put = np.zeros(n, bool)

    def priced(scheme):
        return _put_with(scheme, S, K, T, r, q, sig)

    e = _qdfp.ENGINE
    assert e.fp_steps == 2 and e.fp_a_drift == 1.4
    high = priced(_qdfp.Scheme("high", 12, 12, 5, 48, 6, start="baw", rule="smooth"))
    fp_b = priced(_qdfp.Scheme("fp_b", e.nodes, e.fp_points, e.fp_steps, e.price_points, e.halley_steps,
                               start="baw", rule="smooth"))
    engine = american_price(S, K, T, r, q, sig, put)
    low, material = drift < 1.3, high >= 1e-4 * S
    rel_engine, rel_b = np.abs(engine - high) / high, np.abs(fp_b - high) / high
    # measured: median 9.7e-6 against 1.4e-4, max 2.1e-4 against 5.9e-4
    assert np.median(rel_engine[low]) < 0.2 * np.median(rel_b[low]) and rel_engine[low].max() < 0.6 * rel_b[low].max()
    high_drift = ~low & material
    assert high_drift.sum() > 30
    np.testing.assert_allclose(engine[high_drift], fp_b[high_drift], rtol=1e-12)  # measured 9e-15

    # across the ramp (drift 1.2 to 1.5 by changing the vol): the vega (autodiff) is the slope of
    # the price between neighbouring vols (measured within 4e-5; with a linear ramp 2.3e-3 at its
    # ends, with FP-A's own scale 2% at drift 1.4) and moves in even steps; the IV returns the vol
    Tc, rc, qc = 2.0, 0.05, 0.005
    vols = (rc - qc) * np.sqrt(Tc) / np.linspace(1.2, 1.5, 61)
    g = american_greeks(100.0, 100.0, Tc, rc, qc, vols, False)
    slope = np.diff(g["price"]) / np.diff(vols)
    assert np.max(np.abs(slope / (0.5 * (g["vega"][1:] + g["vega"][:-1])) - 1)) < 3e-4
    steps = np.abs(np.diff(g["vega"]))
    assert steps.max() < 1.5 * np.median(steps)  # measured 0.097 against 0.080
    iv, status = american_implied_vol(g["price"], 100.0, 100.0, Tc, rc, qc, False)
    assert np.all(status == 0) and np.max(np.abs(iv - vols)) < 1e-10


def test_american_prices_within_1e_3_of_a_2000_step_tree():
    S, K, T, r, q, sig, call = _contracts(120, seed=3, days=(1, 1095))
    tree = leisen_reimer_price(S, K, T, r, q, sig, call, steps=2001)
    ours = american_price(S, K, T, r, q, sig, call)
    material = tree >= 1e-4 * S  # a tree is no reference below a hundredth of a cent per 100 of spot
    rel = np.abs(ours - tree) / tree
    assert material.sum() > 100
    assert rel[material].max() < 1e-3 and np.median(rel[material]) < 1e-4
    assert np.all(np.abs(ours - tree)[~material] < 1e-4 * S[~material])
    european = bsm_price_numpy(S, K, T, r, q, sig, call)
    intrinsic = np.maximum(np.where(call, S - K, K - S), 0)
    assert np.all(ours >= european - 1e-12) and np.all(ours >= intrinsic)
    # a call with no dividend is never exercised early: exactly the European price
    assert american_price(100.0, 95.0, 1.0, 0.05, 0.0, 0.3, True)[0] == pytest.approx(
        bsm_price_numpy(100.0, 95.0, 1.0, 0.05, 0.0, 0.3, True), rel=1e-13)


def test_contracts_outside_the_engine_schemes_domain_are_priced_with_its_wide_scheme():
    """Where the put's rate or yield times T is 0.3 or more (a 12-30% rate, or a call's yield,
    over 2.5-5 years here), the engine's 4 and 12 quadrature points resolve the weights e^{r u} poorly
    (errors to 2e-2 here); those contracts are priced again with ``_qdfp.WIDE``, in price, Greeks
    and implied vol alike, and the others are left as they are."""
    import jax

    from optrader_pipelines.pricing import american

    rng = np.random.default_rng(17)
    n = 40
    S, K, T, sig = np.full(n, 100.0), rng.uniform(70, 130, n), rng.uniform(2.5, 5, n), rng.uniform(0.1, 0.6, n)
    call = rng.random(n) < 0.25
    r = np.where(call, rng.uniform(0, 0.1, n), rng.uniform(0.12, 0.3, n))
    q = np.where(call, rng.uniform(0.12, 0.3, n), rng.uniform(0, 0.1, n))
    assert american.wide_rows(T, r, q).size == n
    # the tree at 2,001 steps is itself 2.7e-4 off 4,001 here (a 30% rate over 5 years)
    tree = leisen_reimer_price(S, K, T, r, q, sig, call, steps=4001)
    material = tree >= 1e-4 * S

    def rel(p):
        return (np.abs(p - tree) / tree)[material]

    ours = american_price(S, K, T, r, q, sig, call)
    engine_alone = np.asarray(jax.jit(american._VALUE["qdfp"])(S, K, T, r, q, sig, call))
    assert rel(ours).max() < 1e-3 and np.median(rel(ours)) < 2e-4  # measured: 3.5e-4, 7.5e-5
    assert rel(engine_alone).max() > 1e-2  # measured: 2.4e-2 (7 of 40 above 1e-3)
    # mixed with contracts inside the domain, those keep the engine's price exactly
    S2, K2, T2, r2, q2, sig2, call2 = _contracts(20, seed=4)
    inside = american_price(S2, K2, T2, r2, q2, sig2, call2)
    both = american_price(*(np.concatenate(a) for a in ((S, S2), (K, K2), (T, T2), (r, r2), (q, q2), (sig, sig2),
                                                       (call, call2))))
    assert np.array_equal(both, np.concatenate([ours, inside]))
    # the Greeks are those of the same price (delta and rho against differences of it)
    g = american_greeks(S, K, T, r, q, sig, call)
    assert np.allclose(g["price"], ours, rtol=1e-13)
    hS, hr = 1e-3, 1e-5
    delta = (american_price(S + hS, K, T, r, q, sig, call) - american_price(S - hS, K, T, r, q, sig, call)) / (2 * hS)
    rho = (american_price(S, K, T, r + hr, q, sig, call) - american_price(S, K, T, r - hr, q, sig, call)) / (2 * hr)
    assert np.max(np.abs(g["delta"] - delta)) < 1e-7 and np.max(np.abs(g["rho"] - rho)) < 1e-5  # 6.8e-9, 1.1e-7
    # and the implied vol inverts it, a contract just above its exercise plateau included: a deep
    # call at a 29% yield whose price is flat (intrinsic) in the vol up to 0.437 (the solver once
    # crept across that plateau 0.0017 a step and gave up)
    S3, K3, T3, r3, q3, sig3, call3 = (np.append(a, b) for a, b in zip(
        (S, K, T, r, q, sig, call), (100.0, 70.9173793958027, 3.6525119783205056, 0.08678764241633151,
                                     0.28867779674289995, 0.44746682674642857, True)))
    price = american_price(S3, K3, T3, r3, q3, sig3, call3)
    iv, status = american_implied_vol(price, S3, K3, T3, r3, q3, call3)
    vega = american_greeks(S3, K3, T3, r3, q3, sig3, call3)["vega"]
    solvable = vega >= 1e-3 * S3 * np.sqrt(T3)
    assert solvable[-1] and np.all(status[solvable] == 0)
    assert np.max(np.abs(iv - sig3)[solvable]) < 1e-10


def test_bjerksund_stensland_2002_is_the_coarser_closed_form():
    S, K, T, r, q, sig, call = _contracts(40)
    bs = american_price(S, K, T, r, q, sig, call, method="bs2002")
    tree = leisen_reimer_price(S, K, T, r, q, sig, call, steps=2001)
    assert np.all(bs >= bsm_price_numpy(S, K, T, r, q, sig, call) - 1e-12)
    rel = np.abs(bs - tree) / tree
    assert np.median(rel) < 3e-3 and rel.max() < 3e-2  # measured: median 1.1e-3, max 2.5e-2
    with pytest.raises(ValueError, match="unknown American method"):
        american_price(S, K, T, r, q, sig, call, method="tree")


def test_american_greeks_are_the_derivatives_of_the_price():
    S, K, T, r, q, sig, call = _contracts(24, seed=8, days=(30, 600))
    g = american_greeks(S, K, T, r, q, sig, call)
    assert np.allclose(g["price"], american_price(S, K, T, r, q, sig, call), rtol=1e-13)

    def p(dS=0.0, dT=0.0, dr=0.0, dv=0.0):
        return american_price(S + dS, K, T + dT, r + dr, q, sig + dv, call)

    hS, hT, hr, hv = 1e-3 * S, 1e-4, 1e-5, 1e-4
    fd = {
        "delta": (p(dS=hS) - p(dS=-hS)) / (2 * hS),
        "gamma": (p(dS=hS) - 2 * p() + p(dS=-hS)) / hS ** 2,
        "theta": -(p(dT=hT) - p(dT=-hT)) / (2 * hT),
        "vega": (p(dv=hv) - p(dv=-hv)) / (2 * hv),
        "rho": (p(dr=hr) - p(dr=-hr)) / (2 * hr),
        "vanna": (p(dS=hS, dv=hv) - p(dS=hS, dv=-hv) - p(dS=-hS, dv=hv) + p(dS=-hS, dv=-hv)) / (4 * hS * hv),
        "volga": (p(dv=hv) - 2 * p() + p(dv=-hv)) / hv ** 2,
        "charm": -(p(dS=hS, dT=hT) - p(dS=hS, dT=-hT) - p(dS=-hS, dT=hT) + p(dS=-hS, dT=-hT)) / (4 * hS * hT),
    }
    for name, approx in fd.items():
        scale = np.maximum(np.abs(g[name]), 1e-2 * np.max(np.abs(g[name])))
        assert np.max(np.abs(g[name] - approx) / scale) < 2e-3, name


def test_at_and_below_the_exercise_boundary_the_value_is_intrinsic_and_gamma_never_negative():
    """At or below B(T) the put is exercised: intrinsic value, delta -1, no gamma, theta, vega or
    rho (the integral formula there overshoots intrinsic with negative gamma). Around the
    boundary, on both sides, gamma is >= 0 and delta within [-1, 1], as option_greeks requires."""
    import jax

    from optrader_pipelines.pricing import _qdfp

    rng = np.random.default_rng(21)
    m = 40
    T, r, q, sig = rng.integers(5, 1000, m) / 365, rng.uniform(0.02, 0.06, m), rng.uniform(0, 0.03, m), \
        rng.uniform(0.1, 0.6, m)
    h, xmax = jax.jit(_qdfp.boundary)(T, r, q, sig)
    b_T = np.asarray(xmax) * np.exp(-np.sqrt(np.asarray(h)[-1]))  # unit-strike put boundary at tau = T
    k = np.concatenate([-np.geomspace(0.2, 1e-6, 15), np.geomspace(1e-6, 0.2, 15)])
    K = 100.0
    grid = lambda a: np.broadcast_to(a, (len(k), m)).reshape(-1)  # noqa: E731
    # puts at spots K B(T) e^k; calls by symmetry: the call on (S, K, r, q) is the put on (K, S, q, r),
    # so a call with rate q and yield r has its boundary at S = K / B(T)
    S_put = (K * b_T[None] * np.exp(k[:, None])).reshape(-1)
    S_call = (K / (b_T[None] * np.exp(k[:, None]))).reshape(-1)
    below = grid(k[:, None] < 0)
    for S, rr, qq, call in ((S_put, grid(r), grid(q), False), (S_call, grid(q), grid(r), True)):
        g = american_greeks(S, K, grid(T), rr, qq, grid(sig), call)
        intrinsic = np.maximum(S - K, 0) if call else np.maximum(K - S, 0)
        assert np.all(g["price"][below] == intrinsic[below])
        assert np.all(g["delta"][below] == (1.0 if call else -1.0))
        for name in ("gamma", "theta", "vega", "rho"):
            assert np.all(g[name][below] == 0.0), name
        assert np.all(g["gamma"] >= 0.0), "gamma below 0 next to the boundary"
        assert np.all(np.abs(g["delta"]) <= 1.0)
        assert np.all(g["price"] >= intrinsic)


def test_american_implied_vol_round_trip_and_status():
    S, K, T, r, q, sig, call = _contracts(80, seed=21, days=(1, 1095))
    price = american_price(S, K, T, r, q, sig, call)
    iv, status = american_implied_vol(price, S, K, T, r, q, call)
    vega = american_greeks(S, K, T, r, q, sig, call)["vega"]
    material = vega >= 1e-3 * S * np.sqrt(T)
    assert np.all(status[material] == 0)
    assert np.max(np.abs(iv - sig)[material]) < 1e-10
    solved = status == 0
    back = american_price(S[solved], K[solved], T[solved], r[solved], q[solved], iv[solved], call[solved])
    assert np.allclose(back, price[solved], rtol=1e-12, atol=1e-12 * 100)
    assert np.all(np.isnan(iv[~solved]))
    # below intrinsic, above the bound, at intrinsic (deep ITM put, exercised now), bad input
    iv, status = american_implied_vol([15.0, 101.0, 50.0, np.nan, 5.0], [100.0, 100.0, 50.0, 100.0, 100.0],
                                      [120.0, 100.0, 100.0, 100.0, 100.0], 0.5, 0.05, 0.0,
                                      [False, True, False, True, True])
    assert status.tolist()[:4] == [1, 2, 3, 4] and np.isnan(iv[:4]).all()
    assert status[4] == 0 and 0.05 < iv[4] < 1.0  # no poisoned neighbour
    # at a negative rate (a call: a negative yield) the option is worth more than its strike (spot)
    # can be: its bound is the present value, and such prices solve (status 2 before session 18)
    S, K, T, r, q, sig = np.full(4, 336.25), np.full(4, 282.67), np.full(4, 12.4), -0.019, 0.0, np.full(4, 1.17)
    call, r_, q_ = np.array([False, False, True, True]), np.array([r, r, 0.0, 0.0]), np.array([0.0, 0.0, r, r])
    S_, K_ = np.where(call, K, S), np.where(call, S, K)
    price = american_price(S_, K_, T, r_, q_, sig, call)
    assert np.all(price > np.where(call, S_, K_))
    iv, status = american_implied_vol(price, S_, K_, T, r_, q_, call)
    assert np.all(status == 0) and np.max(np.abs(iv - sig)) < 1e-10


def test_greeks_of_a_worthless_contract_at_a_vanishing_vol_are_finite():
    """At a vol of a few tenths of a percent Barone-Adesi-Whaley's seed for the boundary overflowed
    (its cap at X kept the price right) and its infinite tangent made theta, vega, rho, vanna and
    charm NaN (112 of 10,000 extreme random contracts, session 18); at 0.1% the fixed-point
    ratio N / D of tail probabilities near 1e-150 overflowed in its second derivative (NaN volga)."""
    S, K, T = np.array([424.24, 60.25, 414.64]), np.array([565.66, 18.91, 552.31]), np.array([0.49, 1.372, 0.184])
    r, q = np.array([0.2215, 0.2079, 0.4851]), np.array([0.4342, 0.0103, 0.0567])
    sig, call = np.array([0.0028, 0.0107, 0.0011]), np.array([True, False, True])
    g = american_greeks(S, K, T, r, q, sig, call)
    for name, values in g.items():
        assert np.all(np.isfinite(values)), name
    assert np.all(g["price"] == 0.0) and np.all(g["vega"] == 0.0)


def test_invalid_inputs_give_nan_without_poisoning_the_batch():
    S = np.array([100.0, -1.0, 100.0, np.nan, 100.0])
    T = np.array([0.5, 0.5, 0.0, 0.5, 0.5])
    out = american_price(S, 100.0, T, 0.05, 0.01, 0.3, False)
    assert np.isnan(out[1:4]).all() and np.isfinite(out[[0, 4]]).all()
    g = american_greeks(S, 100.0, T, 0.05, 0.01, 0.3, False)
    assert all(np.isnan(v[1:4]).all() and np.isfinite(v[[0, 4]]).all() for v in g.values())
    # a zero or negative dividend yield (r/q undefined in the boundary's start) still has Greeks
    g = american_greeks(40.55, 40.0, 0.0274, 0.002, np.array([0.0, -0.1]), 0.31, False)
    assert all(np.isfinite(v).all() for v in g.values())


def test_early_exercise_premium_bound_holds_and_greeks_table_agrees_with_the_engine(small_greeks):
    from optrader_pipelines.pricing import early_exercise_premium_bound

    S, K, T, r, q, sig, call = _contracts(400, seed=17, days=(1, 730))
    premium = american_price(S, K, T, r, q, sig, call) - bsm_price_numpy(S, K, T, r, q, sig, call)
    bound = early_exercise_premium_bound(S, K, T, r, q, sig, call)
    assert np.all(premium <= bound + 1e-12 * S)  # the engine is within ~1e-5 of the true value; bound is exact
    assert np.any(bound < 1e-12 * S) and np.any(bound > 1e-3 * S)  # both regimes are exercised
    # option_greeks: the European shortcut (negligible premium) and the American engine give the
    # same IV as the American engine alone, to 1e-9 wherever vega is material
    g = small_greeks[(small_greeks["pricing_model"] == "american_qdfp") & (small_greeks["iv_status"] == "ok")]
    args = [g[c].to_numpy(float) for c in ("underlying_price", "strike", "t_years", "rate", "carry_yield")]
    calls = (g["option_type"] == "C").to_numpy()
    iv, status = american_implied_vol(g["mid"].to_numpy(float), *args, calls)
    vega = american_greeks(*args, g["iv"].to_numpy(float), calls)["vega"]
    material = vega >= 1e-3 * args[0] * np.sqrt(args[2])
    assert material.sum() > 50
    assert np.max(np.abs(iv - g["iv"].to_numpy(float))[material]) < 1e-9
