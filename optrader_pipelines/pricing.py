"""Black-Scholes-Merton pricing, Greeks and implied volatility, vectorized in JAX (float64, jit).

Conventions (every function, every column of ``option_greeks``):

* ``T`` in years = calendar days to expiration / 365; ``r`` and ``q`` continuously compounded.
* A vendor forward ``F`` is honoured by turning it into the dividend yield it implies,
  ``q = r - ln(F/S)/T``; BSM with that ``q`` is exactly Black-76 on ``F``.
* ``delta`` and ``gamma`` per 1.00 of underlying; ``vega`` per 1.00 of volatility from the raw
  kernel (``greeks_table`` reports it per volatility point, i.e. /100); ``theta`` per year from
  the kernel (``greeks_table`` reports it per calendar day, /365); ``rho`` per 1.00 of rate
  (``greeks_table``: per rate point, /100).

Arrays are padded to a few fixed sizes (:data:`PAD_SIZES`) so a new chain length never
triggers a recompilation; longer inputs run in chunks of the largest size.

Implied volatility: a safeguarded Newton iteration on the log of the out-of-the-money
(time-value) price, with a bisection fallback that keeps a bracket, a fixed number of
iterations (branch-free under jit). Status codes (:data:`IV_STATUS`) say why an IV is NaN.
"""

from __future__ import annotations

import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.special import erfc  # noqa: E402
from scipy.special import ndtr  # noqa: E402

PAD_SIZES = (4_096, 65_536, 262_144, 1_048_576)
IV_STATUS = {
    0: "ok",
    1: "below intrinsic",
    2: "above upper bound",
    3: "zero time value",
    4: "invalid input",
    5: "no convergence",
}
SQRT2 = math.sqrt(2.0)
INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_IV_ITERATIONS = 64
_S_MAX = 12.0  # upper bracket for total volatility sigma*sqrt(T)


def _ncdf(x):
    # 0.5*erfc(-x/sqrt2): accurate in both tails and much faster than ndtr in float64
    return 0.5 * erfc(-x / SQRT2)


def _npdf(x):
    return INV_SQRT2PI * jnp.exp(-0.5 * x * x)


def _bsm(S, K, T, r, q, sigma, is_call):
    """Price and first-order Greeks (raw units: per 1.00 vol/rate, theta per year)."""
    sqrt_t = jnp.sqrt(T)
    sig_t = sigma * sqrt_t
    df_r = jnp.exp(-r * T)
    df_q = jnp.exp(-q * T)
    d1 = (jnp.log(S / K) + (r - q) * T) / sig_t + 0.5 * sig_t
    d2 = d1 - sig_t
    sign = jnp.where(is_call, 1.0, -1.0)
    nd1 = _ncdf(sign * d1)
    nd2 = _ncdf(sign * d2)
    pdf1 = _npdf(d1)
    price = sign * (S * df_q * nd1 - K * df_r * nd2)
    delta = sign * df_q * nd1
    gamma = df_q * pdf1 / (S * sig_t)
    vega = S * df_q * pdf1 * sqrt_t
    theta = -S * df_q * pdf1 * sigma / (2.0 * sqrt_t) - sign * r * K * df_r * nd2 + sign * q * S * df_q * nd1
    rho = sign * K * T * df_r * nd2
    return price, delta, gamma, theta, vega, rho


def _valid(S, K, T, r, q):
    finite = jnp.isfinite(S) & jnp.isfinite(K) & jnp.isfinite(T) & jnp.isfinite(r) & jnp.isfinite(q)
    return finite & (S > 0) & (K > 0) & (T > 0)


@jax.jit
def _greeks_kernel(S, K, T, r, q, sigma, is_call):
    ok = _valid(S, K, T, r, q) & jnp.isfinite(sigma) & (sigma > 0)
    # substitute benign values where invalid so no NaN/inf is computed, then mask
    S_, K_, T_, r_, q_, s_ = (jnp.where(ok, a, b) for a, b in
                              ((S, 100.0), (K, 100.0), (T, 1.0), (r, 0.0), (q, 0.0), (sigma, 0.2)))
    out = _bsm(S_, K_, T_, r_, q_, s_, is_call)
    return tuple(jnp.where(ok, o, jnp.nan) for o in out)


def _black_otm(x, s, call):
    """Normalized undiscounted Black price of the option with log-moneyness x = ln(F/K), per unit K... (scaled by sqrt(F K))."""
    # b = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2) for calls; puts by symmetry.
    sign = jnp.where(call, 1.0, -1.0)
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    return sign * (jnp.exp(0.5 * x) * _ncdf(sign * d1) - jnp.exp(-0.5 * x) * _ncdf(sign * d2))


@jax.jit
def _iv_kernel(price, S, K, T, r, q, is_call):
    ok_in = _valid(S, K, T, r, q) & jnp.isfinite(price) & (price >= 0)
    S_, K_, T_, r_, q_, p_ = (jnp.where(ok_in, a, b) for a, b in
                              ((S, 100.0), (K, 100.0), (T, 1.0), (r, 0.0), (q, 0.0), (price, 10.0)))
    df_r = jnp.exp(-r_ * T_)
    F = S_ * jnp.exp((r_ - q_) * T_)
    undisc = p_ / df_r
    intrinsic = jnp.where(is_call, jnp.maximum(F - K_, 0.0), jnp.maximum(K_ - F, 0.0))
    bound = jnp.where(is_call, F, K_)
    time_value = undisc - intrinsic
    scale = jnp.sqrt(F * K_)
    tol = 1e-14 * jnp.maximum(F, K_)
    status = jnp.where(~ok_in, 4,
             jnp.where(time_value < -tol, 1,
             jnp.where(undisc >= bound, 2,
             jnp.where(time_value <= tol, 3, 0))))
    x = jnp.log(F / K_)
    otm_call = x <= 0.0  # out-of-the-money call when F <= K, else out-of-the-money put
    target = jnp.where(status == 0, time_value / scale, 1e-3)
    log_target = jnp.log(target)

    # initial guess: max of the ATM (Brenner-Subrahmanyam) and the inflection-point estimates
    s0 = jnp.clip(jnp.maximum(target * math.sqrt(2.0 * math.pi), jnp.sqrt(2.0 * jnp.abs(x))), 1e-4, _S_MAX / 2)

    def body(_, carry):
        s, lo, hi = carry
        b = _black_otm(x, s, otm_call)
        vega = jnp.exp(-0.5 * (x / s) ** 2 - 0.125 * s * s) * INV_SQRT2PI  # d b / d s
        f = jnp.log(jnp.maximum(b, 1e-300)) - log_target
        lo = jnp.where(f < 0, s, lo)
        hi = jnp.where(f >= 0, s, hi)
        step = f * jnp.maximum(b, 1e-300) / vega
        s_new = s - step
        bad = ~jnp.isfinite(s_new) | (s_new <= lo) | (s_new >= hi)
        s_new = jnp.where(bad, 0.5 * (lo + hi), s_new)
        return s_new, lo, hi

    s, lo, hi = jax.lax.fori_loop(0, _IV_ITERATIONS, body, (s0, jnp.zeros_like(s0), jnp.full_like(s0, _S_MAX)))
    resid = jnp.abs(_black_otm(x, s, otm_call) - target) / target
    status = jnp.where((status == 0) & ~(resid < 1e-9), 5, status)
    iv = jnp.where(status == 0, s / jnp.sqrt(T_), jnp.nan)
    return iv, status


def _bucket(n: int) -> int:
    for size in PAD_SIZES:
        if n <= size:
            return size
    return PAD_SIZES[-1]


def _run_padded(kernel, arrays: list[np.ndarray], pad_values: list[float]):
    n = len(arrays[0])
    outs: list[list[np.ndarray]] = []
    size = _bucket(n)
    for start in range(0, max(n, 1), size):
        stop = min(start + size, n)
        m = stop - start
        padded = []
        for a, fill in zip(arrays, pad_values):
            chunk = a[start:stop]
            if m < size:
                pad = np.full(size - m, fill, dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            padded.append(chunk)
        res = kernel(*padded)
        outs.append([np.asarray(o)[:m] for o in res])
        if n == 0:
            break
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]


def _prep(*arrays, is_call):
    arrs = [np.ascontiguousarray(np.asarray(a, dtype=np.float64)) for a in arrays]
    n = max((a.size for a in arrs), default=0)
    arrs = [np.broadcast_to(a, (n,)).copy() if a.size != n else a.reshape(n) for a in arrs]
    calls = np.broadcast_to(np.asarray(is_call, dtype=bool), (n,)).copy()
    return arrs, calls


def bsm_greeks(S, K, T, r, q, sigma, is_call) -> dict[str, np.ndarray]:
    """Price and Greeks (raw units, see module docstring) for arrays of contracts."""
    arrs, calls = _prep(S, K, T, r, q, sigma, is_call=is_call)
    res = _run_padded(_greeks_kernel, arrs + [calls], [100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True])
    return dict(zip(("price", "delta", "gamma", "theta", "vega", "rho"), res))


def implied_vol(price, S, K, T, r, q, is_call) -> tuple[np.ndarray, np.ndarray]:
    """Implied volatility and status code (0 = ok; see :data:`IV_STATUS`) for each contract."""
    arrs, calls = _prep(price, S, K, T, r, q, is_call=is_call)
    iv, status = _run_padded(_iv_kernel, arrs + [calls], [10.0, 100.0, 100.0, 1.0, 0.0, 0.0, True])
    return iv, status.astype(np.int8)


def dividend_yield_from_forward(S, F, T, r) -> np.ndarray:
    """Continuous dividend yield implied by a forward: q = r - ln(F/S)/T."""
    S, F, T, r = (np.asarray(a, dtype=np.float64) for a in (S, F, T, r))
    with np.errstate(divide="ignore", invalid="ignore"):
        return r - np.log(F / S) / T


def bsm_price_numpy(S, K, T, r, q, sigma, is_call) -> np.ndarray:
    """Reference closed form in numpy/scipy (used by the synthetic market and benchmarks)."""
    S, K, T, r, q, sigma = (np.asarray(a, dtype=np.float64) for a in (S, K, T, r, q, sigma))
    sign = np.where(is_call, 1.0, -1.0)
    sig_t = sigma * np.sqrt(T)
    d1 = (np.log(S / K) + (r - q) * T) / sig_t + 0.5 * sig_t
    d2 = d1 - sig_t
    return sign * (S * np.exp(-q * T) * ndtr(sign * d1) - K * np.exp(-r * T) * ndtr(sign * d2))


def greeks_table(chain, *, price_column: str = "mid"):
    """The chain plus ``mid, dte, t_years, carry_yield, iv, iv_status, delta, gamma, theta, vega, rho``.

    IV is solved from the mid quote (NaN when there is no bid: a one-sided quote has no mid),
    with the vendor forward when the row has one, else the row's dividend yield. Greeks are at
    that IV. Units: theta per calendar day, vega per volatility point, rho per rate point.
    """
    import pandas as pd

    out = chain.copy()
    mid = ((out["bid"] + out["ask"]) / 2.0).where(out["bid"] > 0)
    out["mid"] = mid
    dte = (out["expiration"] - out["quote_date"]).dt.days.astype("int64")
    out["dte"] = dte
    t = dte.to_numpy(dtype=np.float64) / 365.0
    out["t_years"] = t
    S = out["underlying_price"].to_numpy(dtype=np.float64)
    r = out["rate"].to_numpy(dtype=np.float64)
    fwd = out["forward"].to_numpy(dtype=np.float64)
    q = np.where(np.isfinite(fwd), dividend_yield_from_forward(S, fwd, t, r), out["dividend_yield"].to_numpy(dtype=np.float64))
    out["carry_yield"] = q
    K = out["strike"].to_numpy(dtype=np.float64)
    is_call = (out["option_type"] == "C").to_numpy()
    price = out[price_column].to_numpy(dtype=np.float64)
    iv, status = implied_vol(price, S, K, t, r, q, is_call)
    status = np.where(np.isnan(price) & (status == 4), 6, status)  # 6: no bid, no mid
    g = bsm_greeks(S, K, t, r, q, iv, is_call)
    out["iv"] = iv
    out["iv_status"] = pd.Series(status, index=out.index).map(IV_STATUS_ALL)
    out["delta"] = g["delta"]
    out["gamma"] = g["gamma"]
    out["theta"] = g["theta"] / 365.0
    out["vega"] = g["vega"] / 100.0
    out["rho"] = g["rho"] / 100.0
    out["model_price"] = g["price"]
    return out


IV_STATUS_ALL = {**IV_STATUS, 6: "no bid"}
