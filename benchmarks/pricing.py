"""Benchmark: the JAX engine against numpy+scipy, py_vollib_vectorized and QuantLib, side by side
in one process on the same 1,000,000 random contracts. Prints options per second and ratios.

Run with `make bench` (which also installs py_vollib_vectorized into .bench-deps/, outside the
project's dependencies). Each timing is the median of REPEATS runs after a warm-up (compiles
excluded and reported separately). The engine and its baseline for each ratio (numpy+scipy for
price + Greeks, py_vollib_vectorized for IV) are timed alternately, call for call, so that both
see the same machine. Writes bench_results/pricing_<platform>.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if (ROOT / ".bench-deps").is_dir():
    sys.path.append(str(ROOT / ".bench-deps"))

import numpy as np  # noqa: E402

from optrader_pipelines import pricing  # noqa: E402
from optrader_pipelines.pricing import _runtime  # noqa: E402

N = int(os.environ.get("BENCH_CONTRACTS", "1000000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "11"))
QL_SUBSET = 20_000
VOLLIB_SUBSET = int(os.environ.get("BENCH_VOLLIB_CONTRACTS", str(N)))  # the issue: the same 1M contracts
AMERICAN_SUBSET = int(os.environ.get("BENCH_AMERICAN_CONTRACTS", str(N)))


def contracts(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    S = rng.uniform(20, 500, n)
    K = S * np.exp(rng.normal(0, 0.15, n))
    T = rng.integers(1, 730, n) / 365.0
    r = rng.uniform(0.0, 0.05, n)
    q = rng.uniform(0.0, 0.03, n)
    sigma = rng.uniform(0.08, 0.9, n)
    call = rng.random(n) < 0.5
    return S, K, T, r, q, sigma, call


def interleaved(fn_a, fn_b, repeats: int = REPEATS) -> tuple[float, object, float, object]:
    """Median seconds of two functions timed alternately (a, b, a, b, ...) after a warm-up of each:
    this machine's speed drifts over seconds, and alternating puts both under the same drift, so
    their ratio is steadier than that of two back-to-back series."""
    out_a, out_b = fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out_a = fn_a()
        times_a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_b = fn_b()
        times_b.append(time.perf_counter() - t0)
    return float(np.median(times_a)), out_a, float(np.median(times_b)), out_b


def timed(fn, repeats: int = REPEATS) -> tuple[float, object]:
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def machine() -> dict:
    """What the figures were measured on: they are only comparable on the same kind of machine (the
    engine's kernels run twice the lanes where the CPU has AVX-512; numpy's float64 exp and log
    are vectorised only there)."""
    info = {"platform": _runtime.platform(), "devices": len(_runtime.devices()), "cores": os.cpu_count(),
            "device_kind": _runtime.devices()[0].device_kind, "cpu": platform.processor() or platform.machine()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info["cpu"] = fields.get("model name", info["cpu"])
    # vendor, family and model name the microarchitecture where the model name does not ("AMD
    # EPYC" family 23 model 1 is first-generation Zen, which runs each 256-bit AVX2 operation as
    # two 128-bit halves: a quarter of an AVX-512 core's float64 lanes per cycle)
    info["cpu_id"] = " ".join(f"{k}={fields[k]}" for k in ("vendor_id", "cpu family", "model") if k in fields)
    info["mhz"] = fields.get("cpu MHz")
    flags = set(fields.get("flags", "").split())
    info["simd"] = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"
    return info


def main() -> int:
    S, K, T, r, q, sigma, call = contracts(N)
    results: dict[str, dict] = {"machine": machine()}
    m_info = results["machine"]
    print(f"pricing benchmark: {N:,} contracts, device {m_info['platform']} x{m_info['devices']} "
          f"({m_info['cpu']}, {m_info.get('cpu_id', '')}, {m_info['cores']} cores, {m_info.get('simd', '?')}"
          f"{'' if m_info['platform'] == 'cpu' else ', ' + m_info['device_kind']}), median of {REPEATS}")

    t0 = time.perf_counter()
    pricing.bsm_greeks(S[:10], K[:10], T[:10], r[:10], q[:10], sigma[:10], call[:10])
    g = pricing.bsm_greeks(S, K, T, r, q, sigma, call)
    first_greeks = time.perf_counter() - t0
    secs, g, secs_np, g_np = interleaved(lambda: pricing.bsm_greeks(S, K, T, r, q, sigma, call),
                                         lambda: pricing.bsm_greeks_numpy(S, K, T, r, q, sigma, call))
    results["engine price+5 greeks"] = {"seconds": secs, "per_s": N / secs, "first_call_s": first_greeks}
    results["numpy+scipy price+5 greeks"] = {"seconds": secs_np, "per_s": N / secs_np}
    agree = max(float(np.max(np.abs(g[k] - g_np[k]) / np.maximum(np.abs(g_np[k]), 1e-8 * S))) for k in g)
    results["numpy+scipy price+5 greeks"]["max_rel_diff_vs_engine"] = agree

    price = g["price"]
    t0 = time.perf_counter()
    pricing.implied_vol(price, S, K, T, r, q, call)
    first_iv = time.perf_counter() - t0
    try:
        import py_vollib_vectorized as pvv
    except ImportError as exc:
        pvv = None
        print(f"py_vollib_vectorized not available ({exc}); run `make bench` to install it into .bench-deps/")
    m_v = min(VOLLIB_SUBSET, N)
    flag = np.where(call[:m_v], "c", "p")

    def vollib():
        return pvv.vectorized_implied_volatility(price[:m_v], S[:m_v], K[:m_v], T[:m_v], r[:m_v], flag, q=q[:m_v],
                                                 model="black_scholes_merton", return_as="numpy",
                                                 on_error="ignore")

    def engine_iv():
        return pricing.implied_vol(price, S, K, T, r, q, call)

    if pvv is not None:
        secs_iv, (iv, status), secs_v, iv_v = interleaved(engine_iv, vollib)
    else:
        secs_iv, (iv, status) = timed(engine_iv)
    vega_ok = g["vega"] >= 1e-3 * S * np.sqrt(T)
    err = np.abs(iv - sigma)[vega_ok & (status == 0)]
    results["engine implied vol"] = {"seconds": secs_iv, "per_s": N / secs_iv, "first_call_s": first_iv,
                                     "max_abs_sigma_error_where_vega_material": float(err.max()),
                                     "solved_fraction": float((status == 0).mean())}

    m = min(AMERICAN_SUBSET, N)
    am_args = (S[:m], K[:m], T[:m], r[:m], q[:m], sigma[:m], call[:m])
    for method in pricing.AMERICAN_METHODS:
        t0 = time.perf_counter()
        pricing.american_price(*am_args, method=method)
        first = time.perf_counter() - t0
        secs_a, am = timed(lambda: pricing.american_price(*am_args, method=method), repeats=3)
        results[f"engine American price ({method})"] = {"seconds": secs_a, "per_s": m / secs_a, "contracts": m,
                                                        "first_call_s": first}
    secs_ag, _ = timed(lambda: pricing.american_greeks(*am_args), repeats=1)
    results["engine American price+8 greeks (qdfp, autodiff)"] = {"per_s": m / secs_ag, "contracts": m}
    am = pricing.american_price(*am_args)
    secs_ai, _ = timed(lambda: pricing.american_implied_vol(am, *am_args[:5], am_args[6]), repeats=1)
    results["engine American implied vol (qdfp)"] = {"per_s": m / secs_ai, "contracts": m}

    if pvv is not None:
        ok = vega_ok[:m_v] & np.isfinite(iv_v)
        results["py_vollib_vectorized implied vol"] = {
            "seconds_per_contract": secs_v / m_v, "per_s": m_v / secs_v, "contracts": m_v,
            "max_abs_sigma_error_where_vega_material": float(np.max(np.abs(iv_v - sigma[:m_v])[ok]))}

    try:
        import QuantLib as ql
    except ImportError:
        print("QuantLib not available (a dev dependency): skipped")
    else:
        m = min(QL_SUBSET, N)
        today = ql.Date(2, 1, 2024)
        ql.Settings.instance().evaluationDate = today
        dc = ql.Actual365Fixed()
        spot, rq, qq, vq = ql.SimpleQuote(1.0), ql.SimpleQuote(0.0), ql.SimpleQuote(0.0), ql.SimpleQuote(0.2)
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(spot), ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(qq), dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rq), dc)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vq), dc)))
        engine = ql.AnalyticEuropeanEngine(process)
        t0 = time.perf_counter()
        for i in range(m):
            spot.setValue(S[i]), rq.setValue(r[i]), qq.setValue(q[i]), vq.setValue(sigma[i])
            opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call if call[i] else ql.Option.Put, K[i]),
                                   ql.EuropeanExercise(today + int(round(T[i] * 365))))
            opt.setPricingEngine(engine)
            opt.NPV(), opt.delta(), opt.gamma(), opt.theta(), opt.vega(), opt.rho()
        secs_ql = time.perf_counter() - t0
        results["QuantLib price+5 greeks (subset)"] = {"per_s": m / secs_ql, "contracts": m}

    width = max(len(k) for k in results)
    for name, res in results.items():
        if name == "machine":
            continue
        print(f"  {name:{width}s} {res['per_s'] / 1e6:9.2f} M options/s")
    eng = results["engine price+5 greeks"]["per_s"]
    print(f"  engine / numpy+scipy (price+5 greeks): {eng / results['numpy+scipy price+5 greeks']['per_s']:.1f}x")
    if "py_vollib_vectorized implied vol" in results:
        ratio = results["engine implied vol"]["per_s"] / results["py_vollib_vectorized implied vol"]["per_s"]
        print(f"  engine / py_vollib_vectorized (implied vol): {ratio:.1f}x")
    if "QuantLib price+5 greeks (subset)" in results:
        print(f"  engine / QuantLib (price+5 greeks): {eng / results['QuantLib price+5 greeks (subset)']['per_s']:.0f}x")
    print(f"  IV max |d sigma| where vega >= 1e-3 S sqrt(T): "
          f"{results['engine implied vol']['max_abs_sigma_error_where_vega_material']:.1e}; first calls (compile or "
          f"cache load): greeks {first_greeks:.2f} s, IV {first_iv:.2f} s")
    out = ROOT / "bench_results"
    out.mkdir(exist_ok=True)
    (out / f"pricing_{_runtime.platform()}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
