import os

import numpy as np
import pandas as pd
import pytest

import jax
import jax.numpy as jnp

from optrader_pipelines.pricing import IV_STATUS, bsm_greeks, bsm_price_numpy, implied_vol
from optrader_pipelines.pricing.european import bsm_kernel

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
    return days / 365.0, {"price": opt.NPV(), "delta": opt.delta(), "gamma": opt.gamma(), "theta": opt.theta(),
                          "vega": opt.vega(), "rho": opt.rho()}


def test_prices_and_greeks_match_quantlib_to_1e12():
    """European price and Greeks within 1e-12 relative of QuantLib's analytic engine; the absolute
    floor is 1e-12 times the Greek's natural scale (S for price, vega, theta and rho; 1 for delta;
    1/S for gamma), which only deep out-of-the-money contracts reach."""
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(300):
        S = float(rng.uniform(5, 5000))
        K = S * float(np.exp(rng.normal(0, 0.3)))
        T, r, q = float(rng.uniform(1 / 365, 3.0)), float(rng.uniform(-0.01, 0.08)), float(rng.uniform(0, 0.05))
        sigma, call = float(np.exp(rng.uniform(np.log(0.03), np.log(2.0)))), bool(rng.random() < 0.5)
        T, ref = _quantlib(S, K, T, r, q, sigma, call)
        rows.append((S, K, T, r, q, sigma, call, ref))
    S, K, T, r, q, sigma, call = (np.array([row[i] for row in rows]) for i in range(7))
    g = bsm_greeks(S, K, T, r, q, sigma, call.astype(bool))
    scale = {"price": S, "delta": np.ones_like(S), "gamma": 1 / S, "theta": S, "vega": S, "rho": S * T}
    for name in ("price", "delta", "gamma", "theta", "vega", "rho"):
        ref = np.array([row[7][name] for row in rows])
        err = np.abs(g[name] - ref)
        assert np.all(err <= 1e-12 * np.abs(ref) + 1e-12 * scale[name]), (name, float(np.max(err / scale[name])))


def test_second_order_greeks_match_automatic_differentiation():
    rng = np.random.default_rng(2)
    n = 64
    S, K = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    T, r, q, sigma = rng.uniform(0.05, 2, n), rng.uniform(0, 0.05, n), rng.uniform(0, 0.03, n), rng.uniform(0.1, 0.8, n)
    call = rng.random(n) < 0.5
    g = bsm_greeks(S, K, T, r, q, sigma, call, second_order=True)

    def p(S_, T_, sig_, K_, r_, q_, c):  # one contract, scalar in and out
        return bsm_kernel(S_, K_, T_, r_, q_, sig_, c)[0]

    d_s = jax.grad(p, 0)
    auto = jax.jit(jax.vmap(lambda *a: (jax.grad(d_s, 2)(*a), jax.grad(jax.grad(p, 2), 2)(*a),
                                        -jax.grad(d_s, 1)(*a), -jax.grad(p, 1)(*a))))
    vanna, volga, charm, theta = (np.asarray(v) for v in auto(S, T, sigma, K, r, q, call))
    np.testing.assert_allclose(g["vanna"], vanna, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["volga"], volga, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g["charm"], charm, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["theta"], theta, rtol=1e-10, atol=1e-10)


def test_implied_vol_round_trip_is_exact_on_a_wide_grid():
    """sigma -> price -> sigma over deep ITM/OTM strikes, 1 day to 3 years, 1% to 500% vol:
    |d sigma| <= 1e-10 wherever vega >= 1e-3 S sqrt(T); elsewhere the IV reprices the input to
    1e-9 relative (exact in price space), or the time value is below rounding (status 'zero time value')."""
    S, r, q = 100.0, 0.03, 0.01
    K, T, sig = np.meshgrid(S * np.exp(np.linspace(-2.5, 2.5, 41)), [1 / 365, 7 / 365, 0.1, 0.5, 1.0, 3.0],
                            np.exp(np.linspace(np.log(0.01), np.log(5.0), 25)))
    K, T, sig = K.ravel(), T.ravel(), sig.ravel()
    for call in (True, False):
        g = bsm_greeks(S, K, T, r, q, sig, call)
        iv, status = implied_vol(g["price"], S, K, T, r, q, call)
        material = g["vega"] >= 1e-3 * S * np.sqrt(T)
        assert material.sum() > 1000
        assert np.all(status[material] == 0)
        assert np.max(np.abs(iv[material] - sig[material])) <= 1e-10
        solved = ~material & (status == 0)
        assert solved.sum() > 500
        repriced = bsm_greeks(S, K[solved], T[solved], r, q, iv[solved], call)["price"]
        assert np.all(np.abs(repriced - g["price"][solved]) <= 1e-9 * g["price"][solved])
        assert set(np.unique(status[~material])) <= {0, 3}


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


def test_engine_xla_flags_are_added_only_where_the_user_has_not_set_them():
    import subprocess
    import sys

    from optrader_pipelines.pricing import _runtime

    assert _runtime._xla_cpu_flags("", 2) == (
        "--xla_force_host_platform_device_count=2 --xla_cpu_prefer_vector_width=512")
    mine = "--xla_cpu_prefer_vector_width=256 --xla_force_host_platform_device_count=1"
    assert _runtime._xla_cpu_flags(mine, 8) == mine
    assert _runtime._xla_cpu_flags("--xla_dump_to=/tmp/x", 4).split() == [
        "--xla_dump_to=/tmp/x", "--xla_force_host_platform_device_count=4", "--xla_cpu_prefer_vector_width=512"]
    # a process that imports the engine before JAX runs with them
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", "import os, optrader_pipelines.pricing; print(os.environ['XLA_FLAGS'])"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert "--xla_cpu_prefer_vector_width=512" in out and "--xla_force_host_platform_device_count=" in out


def test_a_new_chain_length_does_not_recompile():
    from optrader_pipelines.pricing import _runtime

    implied_vol(10.0, 100.0, np.full(1000, 100.0), 1.0, 0.01, 0.0, True)
    before = _runtime._compiled.cache_info()
    iv, status = implied_vol(np.full(3001, 10.0), 100.0, 100.0, 1.0, 0.01, 0.0, True)
    after = _runtime._compiled.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 1
    assert len(iv) == 3001 and np.all(status == 0)
    # a ladder of powers of 4: one underlying's chain (5,000-16,000 contracts) pads to 16,384, not 65,536
    assert _runtime.PAD_SIZES == (4_096, 16_384, 65_536, 262_144, 1_048_576)
    assert [_runtime.bucket(n) for n in (1, 4_096, 4_097, 16_384, 16_385, 2_000_000)] == [
        4_096, 4_096, 16_384, 16_384, 65_536, 1_048_576]


def test_american_kernels_run_on_a_ladder_of_sizes_without_recompiling():
    """On the CPU an American kernel pads to 1,024 or 65,536 contracts per call, never to the next
    power-of-4 bucket, and a contract's price does not depend on the piece it falls in."""
    from optrader_pipelines.pricing import _runtime, american_price
    from optrader_pipelines.pricing.american import CPU_SLICES, _kernel

    kernel = _kernel("price", "qdfp")
    if _runtime.platform() == "cpu":
        assert [(b - a, size) for a, b, size in _runtime.pieces(kernel, 2_500)] == [(1024, 1024), (1024, 1024),
                                                                                    (452, 1024)]
        big = _runtime.pieces(kernel, 70_000)
        assert big[0] == (0, 65_536, 65_536) and {size for *_, size in big} <= set(CPU_SLICES)
        assert sum(size for *_, size in big) == 65_536 + 5 * 1024  # at most one slice of padding
    rng = np.random.default_rng(3)
    n = 2_500
    S, K = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    T, sig = rng.uniform(0.02, 2.0, n), rng.uniform(0.1, 0.6, n)
    calls = rng.random(n) < 0.5
    american_price(S[:10], K[:10], T[:10], 0.04, 0.01, sig[:10], calls[:10])
    before = _runtime._compiled.cache_info()
    whole = american_price(S, K, T, 0.04, 0.01, sig, calls)
    assert _runtime._compiled.cache_info().misses == before.misses
    alone = np.concatenate([american_price(S[i:i + 7], K[i:i + 7], T[i:i + 7], 0.04, 0.01, sig[i:i + 7], calls[i:i + 7])
                            for i in (0, 1020, 2040, 2493)])
    idx = np.concatenate([np.arange(i, i + 7) for i in (0, 1020, 2040, 2493)])
    np.testing.assert_array_equal(whole[idx], alone)


def test_greeks_table_prices_each_contract_with_its_exercise_style_and_parity_forwards():
    import datetime as dt

    from optrader_pipelines.market.synthetic import SyntheticMarket
    from optrader_pipelines.pricing import american_price, greeks_table, parity_forwards

    chain = SyntheticMarket(universe=("SPX", "AAPL"), strikes_per_side=8).load_chain(dt.date(2025, 3, 14)).chain
    table = greeks_table(chain)
    am = table[(table["exercise_style"] == "A") & (table["iv_status"] == "ok")]
    eu = table[(table["exercise_style"] == "E") & (table["iv_status"] == "ok")]
    assert len(am) > 50 and len(eu) > 50
    assert set(am["pricing_model"]) == {"american_qdfp"} and set(eu["pricing_model"]) == {"bsm"}
    # an American row's IV reprices its mid under the American model
    back = american_price(am["underlying_price"], am["strike"], am["t_years"], am["rate"], am["carry_yield"],
                          am["iv"], am["option_type"] == "C")
    assert np.allclose(back, am["mid"], rtol=1e-9)
    # European rows without a vendor forward take the parity forward of their expiry
    assert set(eu["carry_source"]) == {"parity forward"} and set(am["carry_source"]) == {"dividend yield"}
    par = parity_forwards(chain[chain["exercise_style"] == "E"])
    true_q = chain.loc[chain["exercise_style"] == "E", "dividend_yield"].iloc[0]
    near = par.merge(chain[["underlying", "expiration", "quote_date"]].drop_duplicates(), on=["underlying", "expiration"])
    long_dated = (near["expiration"] - near["quote_date"]).dt.days > 60
    assert np.median(np.abs(near.loc[long_dated, "dividend_yield"] - true_q)) < 2e-3


def test_kernels_prepared_in_the_background_are_the_ones_the_table_then_runs(small_chain, monkeypatch):
    """prepare_greeks_table starts loading, in background threads, the kernels greeks_table will
    run (European IV, American IV and Greeks at the chain's padded sizes); greeks_table then finds
    them ready, and its results equal a table computed without preparation. A second prepare is a
    no-op, and a failed preparation is started again."""
    from concurrent.futures import wait

    from optrader_pipelines.pricing import _runtime, greeks_table, prepare_greeks_table
    from optrader_pipelines.pricing.american import _kernel as american_kernel

    expected = greeks_table(small_chain)  # everything loaded the ordinary way (at first call)
    _runtime._compiled.cache_clear()  # fresh kernel objects: none prepared yet
    futures = prepare_greeks_table(small_chain)
    assert len(futures) >= 3  # the European IV and at least one size each of the American IV and Greeks
    done, _ = wait(futures, timeout=600)
    assert len(done) == len(futures) and all(f.exception() is None for f in futures)
    assert prepare_greeks_table(small_chain) == []  # all ready: nothing started again

    real, used = _runtime._compiled, []

    def recording(kernel, size, in_dtypes, n_out):
        compiled = real(kernel, size, in_dtypes, n_out)
        used.append((kernel.__name__, size, compiled.prepared))
        return compiled

    monkeypatch.setattr(_runtime, "_compiled", recording)
    table = greeks_table(small_chain)
    monkeypatch.setattr(_runtime, "_compiled", real)
    pd.testing.assert_frame_equal(table, expected)
    heavy = [u for u in used if u[0].startswith(("american_iv", "american_greeks", "iv_two_steps"))]
    assert {u[0] for u in heavy} >= {"american_iv_qdfp", "american_greeks_qdfp", "iv_two_steps_kernel"}
    assert all(ready for *_, ready in heavy), heavy  # each found ready, none loaded at its call

    # a preparation that failed is started again (a call would also prepare the kernel itself)
    signature = (("<f8",) * 6 + ("|b1",), 1)
    k = real(american_kernel("price", "qdfp"), 1_024, *signature)
    k.prepared = False
    k.prepare = lambda: (_ for _ in ()).throw(RuntimeError("disk gone"))
    first = _runtime.prepare(american_kernel("price", "qdfp"), 10, *signature)
    wait(first, timeout=60)
    assert isinstance(first[0].exception(), RuntimeError)
    del k.prepare  # the class's own again
    again = _runtime.prepare(american_kernel("price", "qdfp"), 10, *signature)
    assert again and again[0] is not first[0]
    wait(again, timeout=600)
    assert again[0].exception() is None and k.prepared


def test_normal_cdf_without_erfc_is_accurate_in_both_tails_and_differentiates_to_the_density():
    """The engine's N(x) = phi(x) R(|x|) (R a fitted Mills ratio) against scipy's erfc-based ndtr
    and erfcx; N'(x) is phi(x) exactly, also in second order; edge values are exact."""
    from scipy.special import erfcx, ndtr

    from optrader_pipelines.pricing.european import mills_ratio, ncdf, ncdf_with_pdf, npdf

    x = np.concatenate([np.linspace(-8, 8, 16001), -np.geomspace(8, 37.5, 2000)])
    ours = np.asarray(jax.jit(ncdf)(x))
    ref = ndtr(x)
    # against 50-digit values it is within 2e-15 here (XLA's erfc 1e-14); scipy's own error is ~1e-14
    assert np.max(np.abs(ours / ref - 1)[np.abs(x) <= 8]) < 3e-14
    # far tail: against 50-digit values ours is within 6e-14 (phi's exp at x = -37), scipy's 2.2e-13
    assert np.max(np.abs(ours / ref - 1)) < 5e-13
    y = np.linspace(0, 40, 40001)
    mills = np.sqrt(np.pi / 2) * erfcx(y / np.sqrt(2))
    assert np.max(np.abs(np.asarray(mills_ratio(y)) / mills - 1)) < 3e-15  # fit 2.5e-16, float64 4.4 ulp
    # the derivative is the density itself (custom rule), not the approximation's derivative
    d1 = jax.vmap(jax.grad(ncdf))(x)
    d2 = jax.vmap(jax.grad(jax.grad(ncdf)))(x)
    assert np.array_equal(np.asarray(d1), np.asarray(npdf(x)))
    assert np.allclose(np.asarray(d2), -x * np.asarray(npdf(x)), rtol=1e-14, atol=0)
    edges = np.asarray(ncdf(jnp.array([-jnp.inf, -40.0, 40.0, jnp.inf])))
    assert edges.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert abs(float(ncdf(0.0)) - 0.5) <= 1.2e-16
    assert np.isnan(np.asarray(ncdf(jnp.array([jnp.nan])))).all()
    # a derived density gives the same CDF: phi(d2) = phi(d1) F / K in the Black-Scholes kernel
    assert np.asarray(ncdf_with_pdf(-1.5, npdf(-1.5))) == np.asarray(ncdf(-1.5))


def test_the_engines_log_is_within_one_ulp_with_exact_edges_and_derivatives():
    """The kernels' bitwise (fdlibm) log against a long-double reference over the whole normal
    range and near 1; its edge values are numpy's; its derivatives are 1/x and -1/x^2."""
    from optrader_pipelines.pricing.european import log

    rng = np.random.default_rng(11)
    x = np.concatenate([np.exp(rng.uniform(-708, 709, 200_000)), 1 + rng.uniform(-1e-3, 1e-3, 50_000),
                        rng.uniform(0.5, 2.0, 50_000), 2.0 ** np.arange(-1022, 1024)])
    ours = np.asarray(jax.jit(log)(x))
    ref = np.log(x.astype(np.longdouble))
    ulps = np.abs(ours - ref) / np.spacing(np.abs(ref.astype(np.float64)))
    assert float(ulps.max()) < 1.0
    assert np.mean(ours == np.log(x)) > 0.9  # numpy's correctly rounded log agrees almost everywhere
    edges = np.array([0.0, -0.0, -1.0, -np.inf, np.nan, np.inf, 1.0, np.finfo(np.float64).max])
    np.testing.assert_array_equal(np.asarray(jax.jit(log)(edges)), np.log(edges))
    g = np.linspace(0.1, 10, 101)
    np.testing.assert_allclose(np.asarray(jax.vmap(jax.grad(log))(g)), 1 / g, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(jax.vmap(jax.grad(jax.grad(log)))(g)), -1 / g ** 2, rtol=1e-15)


def test_implied_vol_solves_contracts_that_need_more_than_two_steps_in_a_second_pass():
    """The first pass gives every contract two Householder steps; one that needs a third (this
    1-day at-the-money call at 0.7% vol, from the round-trip grid: none of 1M random contracts
    needs one) is solved again to convergence, and a batch gets exactly what the one-pass kernel
    with its loop gives every contract."""
    from optrader_pipelines.pricing import _runtime, implied

    slow = dict(S=100.0, K=100.0, T=1 / 365, r=0.03, q=0.01, sigma=0.007104154162669614)
    rng = np.random.default_rng(8)
    n = 3000
    S = np.r_[slow["S"], rng.uniform(50, 150, n)]
    K = np.r_[slow["K"], S[1:] * np.exp(rng.normal(0, 0.2, n))]
    T = np.r_[slow["T"], rng.integers(1, 730, n) / 365]
    r, q = np.r_[slow["r"], rng.uniform(0, 0.05, n)], np.r_[slow["q"], rng.uniform(0, 0.03, n)]
    sigma = np.r_[slow["sigma"], rng.uniform(0.05, 1.5, n)]
    call = np.r_[True, rng.random(n) < 0.5]
    price = bsm_greeks(S, K, T, r, q, sigma, call)["price"]
    arrs, calls = _runtime.as_arrays(price, S, K, T, r, q, is_call=call)
    _, first = _runtime.run(implied.iv_two_steps_kernel, arrs + [calls], implied._IV_PAD, 2)
    assert first[0] == 5  # the first pass leaves it unconverged
    one_pass = _runtime.run(implied.iv_kernel, arrs + [calls], implied._IV_PAD, 2)
    iv, status = implied_vol(price, S, K, T, r, q, call)
    assert status[0] == 0 and abs(iv[0] - slow["sigma"]) <= 1e-10
    np.testing.assert_array_equal(iv, one_pass[0])
    np.testing.assert_array_equal(status, one_pass[1])


def test_region0_compaction_gives_the_function_on_every_masked_element_in_each_branch():
    """The IV's gather-compute-scatter helper: with an eighth, a quarter or more of a chunk masked
    (its three branches) the masked elements get exactly what the function gives them directly."""
    from optrader_pipelines.pricing.implied import _compacted, _prefix_count

    rng = np.random.default_rng(2)
    n = 4096
    a, b = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n)

    def fn(x, y):
        return jnp.exp(x) / y + jnp.sqrt(x * y)

    direct = np.asarray(jax.jit(fn)(a, b))
    run = jax.jit(lambda m, x, y: _compacted(m, fn, x, y))
    for frac in (0.05, 0.2, 0.6, 0.0, 1.0):
        mask = rng.random(n) < frac
        np.testing.assert_array_equal(np.asarray(_prefix_count(jnp.asarray(mask))), np.cumsum(mask))
        out = np.asarray(run(mask, a, b))
        np.testing.assert_array_equal(out[mask], direct[mask])


def test_the_accelerator_path_gives_the_same_numbers_as_the_cpu_path(monkeypatch):
    """On a GPU the runtime runs a plain jit of each kernel over the whole padded array (no
    shard_map, no carriers, no CPU size ladder). No GPU is lent to CI, so that path is run here on
    the CPU by making the runtime see an accelerator: it must give what the CPU path gives."""
    from optrader_pipelines.pricing import _runtime, american_price
    from optrader_pipelines.pricing.american import _kernel as american_kernel

    rng = np.random.default_rng(9)
    n = 1_500
    S, K = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    T, sig = rng.uniform(0.02, 2.0, n), rng.uniform(0.1, 0.6, n)
    calls = rng.random(n) < 0.5

    def everything():
        g = bsm_greeks(S, K, T, 0.04, 0.01, sig, calls)
        iv, status = implied_vol(g["price"], S, K, T, 0.04, 0.01, calls)
        return g, iv, status, american_price(S, K, T, 0.04, 0.01, sig, calls)

    cpu = everything()

    class Accelerator:
        platform = "gpu"

    monkeypatch.setattr(_runtime, "devices", lambda: [Accelerator()])
    monkeypatch.setattr(_runtime, "platform", lambda: "gpu")
    monkeypatch.setattr(_runtime, "_EXPORT_DIR", None)  # keep the CPU's exported kernels out of it
    _runtime._compiled.cache_clear()
    try:
        acc = everything()
        hits = _runtime._compiled.cache_info().hits
        used = _runtime._compiled(bsm_kernel, 4_096, ("<f8",) * 6 + ("|b1",), 6)
        assert _runtime._compiled.cache_info().hits == hits + 1  # the kernel the call above ran
        assert used.sharding is None and used.carriers is None  # plain jit: no shard_map, no carriers
        assert _runtime.pieces(american_kernel("price", "qdfp"), 70_000) == [(0, 70_000, 262_144)]  # no ladder
    finally:
        _runtime._compiled.cache_clear()
    for k in cpu[0]:
        np.testing.assert_allclose(acc[0][k], cpu[0][k], rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(acc[2], cpu[2])
    np.testing.assert_allclose(acc[1], cpu[1], rtol=1e-13)
    np.testing.assert_allclose(acc[3], cpu[3], rtol=1e-13, atol=1e-15)


def test_results_are_fresh_arrays_that_a_later_call_does_not_overwrite():
    """The CPU kernels write into their previous call's donated output buffers; what a call returns
    is copied out of them, so it survives the next call, and large results start on a 2 MiB page.
    The inputs are staged into kept buffers whose JAX arrays are kept too: a call sees its own."""
    from optrader_pipelines.pricing import _runtime

    rng = np.random.default_rng(5)
    n = 70_000
    S, K = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    first = bsm_greeks(S, K, 0.5, 0.03, 0.01, 0.25, True)
    kept = {k: v.copy() for k, v in first.items()}
    second = bsm_greeks(S * 2, K, 0.5, 0.03, 0.01, 0.25, True)
    third = bsm_greeks(S, K, 0.5, 0.03, 0.01, 0.25, True)
    for k in first:
        np.testing.assert_array_equal(first[k], kept[k])
        np.testing.assert_array_equal(third[k], kept[k])
        assert not np.shares_memory(first[k], second[k]) and not np.shares_memory(first[k], third[k])
    assert not np.array_equal(first["price"], second["price"])
    np.testing.assert_allclose(first["price"], bsm_price_numpy(S, K, 0.5, 0.03, 0.01, 0.25, True), rtol=1e-12)
    np.testing.assert_allclose(second["price"], bsm_price_numpy(S * 2, K, 0.5, 0.03, 0.01, 0.25, True), rtol=1e-12)
    # the staged inputs' JAX arrays are kept from call to call and read what was staged since
    assert _runtime._POOL._on_device
    big = _runtime._result_array(300_000, np.float64)
    assert big.ctypes.data % (1 << 21) == 0 and big.shape == (300_000,) and big.flags.writeable


def test_copies_split_across_cores_give_the_same_results(monkeypatch):
    """Large stagings and copy-outs are split across threads, one part of every array each (with
    the padded tail filled); a call that takes that path returns what the one-thread path does,
    bit for bit, and a failing copy raises in the caller."""
    from optrader_pipelines.pricing import _runtime

    rng = np.random.default_rng(11)
    n = 70_001  # pieces of 65,536 and a padded tail: parts of unequal, odd lengths
    S, K, T = rng.uniform(50, 150, n), rng.uniform(50, 150, n), rng.uniform(0.01, 2, n)
    call = rng.random(n) < 0.5
    serial = bsm_greeks(S, K, T, 0.03, 0.01, 0.25, call)
    monkeypatch.setattr(_runtime, "_PARALLEL_MIN", 1)
    split = bsm_greeks(S, K, T, 0.03, 0.01, 0.25, call)
    if (os.cpu_count() or 1) > 1 and _runtime.platform() == "cpu":  # one core: one thread anyway
        assert os.getpid() in _runtime._COPIERS  # the split path ran (its threads are made there)
    for k in serial:
        np.testing.assert_array_equal(split[k], serial[k])
    np.testing.assert_allclose(split["price"], bsm_price_numpy(S, K, T, 0.03, 0.01, 0.25, call), rtol=1e-12, atol=1e-12 * 150)
    with pytest.raises(ValueError):
        _runtime._copy_all([(np.zeros(8), np.zeros(9))])


def test_result_memory_is_reused_only_once_the_result_and_all_its_views_are_gone():
    """Large results come from a pool of recycled blocks: a block goes back only when nothing can
    read it any more (a view keeps it), and beyond the pool's limit a block is released."""
    import gc

    from optrader_pipelines.pricing import _runtime

    n = 300_000  # 2.4 MB: pooled
    a = _runtime._result_array(n, np.float64)
    assert a.ctypes.data % (1 << 21) == 0 and a.shape == (n,) and a.flags.writeable
    a[:] = 1.0
    view = a[10:20].reshape(2, 5)
    addr = a.ctypes.data
    del a
    gc.collect()
    b = _runtime._result_array(n, np.float64)  # the view still holds the first block
    assert not np.shares_memory(b, view) and b.ctypes.data != addr
    b[:] = 2.0
    assert (view == 1.0).all()
    del view
    gc.collect()
    c = _runtime._result_array(n, np.float64)
    assert c.ctypes.data == addr  # back in the pool once its last view was gone, and reused
    small = _runtime._ResultPool(keep=0)
    d = small.array(n, np.float64)
    del d
    gc.collect()
    assert small.free_bytes == 0 and not any(small.free.values())
    assert _runtime._result_array(1000, np.float64).base is None  # small results: plain arrays


def test_traced_kernels_are_kept_across_processes_and_a_damaged_file_is_replaced(tmp_path):
    """A kernel traced in one process is exported to the cache directory; the next process runs
    the deserialized module (no tracing) with identical results; an unreadable file is traced
    again and replaced, never an error."""
    import json
    import subprocess
    import sys

    script = (
        "import json, numpy as np\n"
        "from optrader_pipelines.pricing import bsm_greeks, _runtime, european\n"
        "traces, terms = [], european._bsm_terms\n"  # runs only when the kernel is traced
        "european._bsm_terms = lambda *a: traces.append(1) or terms(*a)\n"
        "g = bsm_greeks(np.linspace(80, 120, 101), 100.0, 0.5, 0.03, 0.01, 0.25, True)\n"
        "print(json.dumps({'exports': _runtime.EXPORTS, 'traces': len(traces), 'price': g['price'].tolist()}))\n")

    def run():
        env = {**__import__("os").environ, "OPTRADER_JAX_CACHE": str(tmp_path)}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr

    first, _ = run()
    files = sorted((tmp_path / "exported").glob("european.bsm_kernel-*.jaxexport"))
    assert first["exports"] == {"loaded": 0, "exported": 1, "failed": 0} and len(files) == 1
    second, _ = run()
    assert second["exports"] == {"loaded": 1, "exported": 0, "failed": 0}
    assert first["traces"] > 0 and second["traces"] == 0  # nothing traced, not even for output shapes
    assert second["price"] == first["price"]
    files[0].write_bytes(b"not an exported module")
    third, stderr = run()
    assert third["exports"] == {"loaded": 0, "exported": 1, "failed": 0} and "unreadable" in stderr
    assert third["price"] == first["price"]
    assert files[0].read_bytes() != b"not an exported module"
    # a file of another code version of the same kernel is removed when the kernel is exported
    stale = files[0].with_name(files[0].name.rsplit("-", 1)[0] + "-0000000000.jaxexport")
    stale.write_bytes(b"older code")
    files[0].unlink()
    fourth, _ = run()
    assert fourth["exports"]["exported"] == 1 and fourth["price"] == first["price"]
    assert not stale.exists() and files[0].exists()
