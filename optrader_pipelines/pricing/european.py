"""Black-Scholes-Merton closed forms (European exercise), vectorized JAX kernels.

Conventions (all raw outputs; :func:`optrader_pipelines.pricing.greeks_table` converts):

* ``T`` in years (calendar days / 365); ``r`` and ``q`` continuously compounded, per year.
* ``price`` per 1 unit of underlying (multiply by the contract multiplier for dollars).
* ``delta`` = dV/dS; ``gamma`` = d2V/dS2.
* ``theta`` = dV/dt per year as calendar time passes (= -dV/dT); per calendar day is theta/365.
* ``vega`` = dV/dsigma per 1.00 of volatility; per volatility point is vega/100.
* ``rho`` = dV/dr per 1.00 of rate; per rate point is rho/100.
* ``vanna`` = d2V/dS dsigma; ``volga`` = d2V/dsigma2; ``charm`` = d(delta)/dt per year (= -d delta/dT).

Invalid inputs (non-finite, S, K, T or sigma <= 0) give NaN in every output of that contract and
never affect another contract of the batch.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfc
from scipy.special import ndtr

from . import _runtime

SQRT2 = math.sqrt(2.0)
INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)

GREEKS = ("price", "delta", "gamma", "theta", "vega", "rho")
SECOND_ORDER = ("vanna", "volga", "charm")


def ncdf(x):
    """Standard normal CDF as 0.5*erfc(-x/sqrt2): accurate in both tails, fast in float64."""
    return 0.5 * erfc(-x / SQRT2)


def npdf(x):
    return INV_SQRT2PI * jnp.exp(-0.5 * x * x)


def valid_inputs(S, K, T, r, q):
    finite = jnp.isfinite(S) & jnp.isfinite(K) & jnp.isfinite(T) & jnp.isfinite(r) & jnp.isfinite(q)
    return finite & (S > 0) & (K > 0) & (T > 0)


def guard(S, K, T, r, q, sigma):
    """(valid mask, inputs with invalid contracts replaced by a benign one): a kernel computes on
    the replacements and writes NaN for them, so a bad contract never poisons its batch."""
    ok = valid_inputs(S, K, T, r, q) & jnp.isfinite(sigma) & (sigma > 0)
    subs = tuple(jnp.where(ok, a, c) for a, c in ((S, 100.0), (K, 100.0), (T, 1.0), (r, 0.05), (q, 0.02),
                                                   (sigma, 0.2)))
    return ok, subs


def _bsm_terms(S, K, T, r, q, sigma, is_call):
    sqrt_t = jnp.sqrt(T)
    sig_t = sigma * sqrt_t
    df_r = jnp.exp(-r * T)
    df_q = jnp.exp(-q * T)
    d1 = (jnp.log(S / K) + (r - q) * T) / sig_t + 0.5 * sig_t
    d2 = d1 - sig_t
    sign = jnp.where(is_call, 1.0, -1.0)
    nd1 = ncdf(sign * d1)
    nd2 = ncdf(sign * d2)
    pdf1 = npdf(d1)
    return sqrt_t, sig_t, df_r, df_q, d1, d2, sign, nd1, nd2, pdf1


def bsm_kernel(S, K, T, r, q, sigma, is_call):
    """Price, delta, gamma, theta, vega, rho (see module conventions)."""
    ok, (S, K, T, r, q, sigma) = guard(S, K, T, r, q, sigma)
    sqrt_t, sig_t, df_r, df_q, d1, d2, sign, nd1, nd2, pdf1 = _bsm_terms(S, K, T, r, q, sigma, is_call)
    s_part = S * df_q
    k_part = K * df_r
    price = sign * (s_part * nd1 - k_part * nd2)
    delta = sign * df_q * nd1
    vega = s_part * pdf1 * sqrt_t
    gamma = vega / (S * S * sigma * T)
    theta = -vega * sigma / (2.0 * T) - sign * r * k_part * nd2 + sign * q * s_part * nd1
    rho = sign * k_part * T * nd2
    nan = jnp.nan
    return tuple(jnp.where(ok, o, nan) for o in (price, delta, gamma, theta, vega, rho))


def bsm_second_order_kernel(S, K, T, r, q, sigma, is_call):
    """vanna, volga, charm (see module conventions)."""
    ok, (S, K, T, r, q, sigma) = guard(S, K, T, r, q, sigma)
    sqrt_t, sig_t, df_r, df_q, d1, d2, sign, nd1, nd2, pdf1 = _bsm_terms(S, K, T, r, q, sigma, is_call)
    vega = S * df_q * pdf1 * sqrt_t
    vanna = -df_q * pdf1 * d2 / sigma
    volga = vega * d1 * d2 / sigma
    charm = sign * q * df_q * nd1 - df_q * pdf1 * (2.0 * (r - q) * T - d2 * sig_t) / (2.0 * T * sig_t)
    return tuple(jnp.where(ok, o, jnp.nan) for o in (vanna, volga, charm))


_PAD = [100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True]


def bsm_greeks(S, K, T, r, q, sigma, is_call, *, second_order: bool = False) -> dict[str, np.ndarray]:
    """European price and Greeks for arrays (or scalars) of contracts; raw units (module docstring).

    With ``second_order=True`` also ``vanna``, ``volga`` and ``charm``."""
    arrs, calls = _runtime.as_arrays(S, K, T, r, q, sigma, is_call=is_call)
    out = dict(zip(GREEKS, _runtime.run(bsm_kernel, arrs + [calls], _PAD, 6)))
    if second_order:
        out.update(zip(SECOND_ORDER, _runtime.run(bsm_second_order_kernel, arrs + [calls], _PAD, 3)))
    return out


def normalized_black(x, s):
    """Normalized out-of-the-money Black price b(x, s) for x = -|ln(F/K)| <= 0 and total vol s > 0:
    b = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2); the undiscounted OTM option is sqrt(F K) b."""
    h = x / s
    t = 0.5 * s
    return jnp.exp(0.5 * x) * ncdf(h + t) - jnp.exp(-0.5 * x) * ncdf(h - t)


def bsm_price_numpy(S, K, T, r, q, sigma, is_call) -> np.ndarray:
    """The same closed form in numpy/scipy: the synthetic market's quotes and the benchmark's baseline."""
    S, K, T, r, q, sigma = (np.asarray(a, dtype=np.float64) for a in (S, K, T, r, q, sigma))
    sign = np.where(is_call, 1.0, -1.0)
    sig_t = sigma * np.sqrt(T)
    d1 = (np.log(S / K) + (r - q) * T) / sig_t + 0.5 * sig_t
    d2 = d1 - sig_t
    return sign * (S * np.exp(-q * T) * ndtr(sign * d1) - K * np.exp(-r * T) * ndtr(sign * d2))


def bsm_greeks_numpy(S, K, T, r, q, sigma, is_call) -> dict[str, np.ndarray]:
    """Price and the five Greeks in numpy/scipy (the benchmark's baseline; same conventions)."""
    S, K, T, r, q, sigma = (np.asarray(a, dtype=np.float64) for a in (S, K, T, r, q, sigma))
    sign = np.where(is_call, 1.0, -1.0)
    sqrt_t = np.sqrt(T)
    sig_t = sigma * sqrt_t
    df_r, df_q = np.exp(-r * T), np.exp(-q * T)
    d1 = (np.log(S / K) + (r - q) * T) / sig_t + 0.5 * sig_t
    d2 = d1 - sig_t
    nd1, nd2 = ndtr(sign * d1), ndtr(sign * d2)
    pdf1 = INV_SQRT2PI * np.exp(-0.5 * d1 * d1)
    vega = S * df_q * pdf1 * sqrt_t
    return {
        "price": sign * (S * df_q * nd1 - K * df_r * nd2),
        "delta": sign * df_q * nd1,
        "gamma": vega / (S * S * sigma * T),
        "theta": -vega * sigma / (2 * T) - sign * r * K * df_r * nd2 + sign * q * S * df_q * nd1,
        "vega": vega,
        "rho": sign * K * T * df_r * nd2,
    }
