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

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from . import _runtime

INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)

GREEKS = ("price", "delta", "gamma", "theta", "vega", "rho")
SECOND_ORDER = ("vanna", "volga", "charm")


# The normal CDF without erfc. N(-y) = phi(y) R(y) for y >= 0, with R the Mills ratio, given by a
# rational function of degree 9/9 in u = alpha t + beta, t = 1 / (1 + 0.3 y) (u runs over [-1, 1]
# for y in [0, 40]; N(-40) underflows). Fitted to minimax relative error in 50-digit arithmetic by
# scripts/fit_mills_ratio.py: 2.5e-16 exact, about 5 ulp (1.1e-15) evaluated in float64. With phi's
# own exp the whole CDF is within 2e-15 relative for |x| < 8 and 6e-14 at x = -36 (XLA's erfc:
# 1e-14 and 2e-13). It costs a division, 18 multiply-adds and another division, against erfc's
# exp, three rational branches and three divisions; where phi is known already (the Black-Scholes
# d1 and d2, the implied-vol objective) it costs no transcendental function at all.
_MILLS_C = 0.3
_MILLS_T0 = 1.0 / (1.0 + _MILLS_C * 40.0)
_MILLS_ALPHA = 2.0 / (1.0 - _MILLS_T0)
_MILLS_BETA = -1.0 - 2.0 * _MILLS_T0 / (1.0 - _MILLS_T0)
_MILLS_P = (
    0.4490335336889615, 0.5747725847315228, 0.5865066052728889,
    0.37486495714379137, 0.19416096435937302, 0.07280550161470542,
    0.021037997979736114, 0.004219955477697978, 0.0005458366296955601,
    3.373243614077228e-05)
_MILLS_Q = (
    0.7617875920103003, 0.4416609132154501, 0.42900519235444695,
    0.11492398421198952, 0.060751688387125545, 0.006434553512417317,
    0.0029318781689647946, 2.803542936818202e-05, 4.2849790181010565e-05,
    -2.8332629784651493e-07)


def _horner(coef, u):
    acc = coef[-1]
    for c in coef[-2::-1]:
        acc = acc * u + c
    return acc


def mills_ratio(y):
    """R(y) = N(-y) / phi(y) for y >= 0 (also at y = inf, where it is 0), to ~1e-15 relative."""
    t = 1.0 / (1.0 + _MILLS_C * y)
    u = _MILLS_ALPHA * t + _MILLS_BETA
    return t * _horner(_MILLS_P, u) / _horner(_MILLS_Q, u)


# The Mills ratio with one division: a rational of degree 8/9 in y itself, every coefficient
# positive (no cancellation), within 4e-15 relative for y in [0, 38.5] (fitted by weighted
# non-negative least squares against scipy's erfcx, session 17): 17 multiply-adds and one
# division against :func:`mills_ratio`'s 18 and two. Used by the American fixed-point method,
# which evaluates ~180 normal CDFs per contract. y is capped at 38 (beyond it phi(y) < 1e-313).
_MILLS_FAST_P = (1.2533141373155035, 1.8009512584007716, 1.276514133908533, 0.5683541860336205,
                 0.17211057195745325, 0.03618835009305002, 0.0051711075292900964, 0.0004627485911790192,
                 2.0195577824555482e-05)
_MILLS_FAST_Q = (1.0, 2.2348357646397403, 2.301651871617042, 1.4384771608791382, 0.6036174668745082,
                 0.17724126953497005, 0.03665109927485701, 0.005191303094708358, 0.00046274859133352324,
                 2.019557782370035e-05)


def mills_ratio_fast(y):
    """R(y) for y >= 0 to ~4e-15 relative (see _MILLS_FAST_P)."""
    y = jnp.minimum(y, 38.0)
    return _horner(_MILLS_FAST_P, y) / _horner(_MILLS_FAST_Q, y)


def _ncdf_with_pdf_using(mills):
    """N(x) given ``pdf`` = phi(x) from the Mills ratio ``mills``, with phi as its derivative."""
    @jax.custom_jvp
    def ncdf_with_pdf(x, pdf):
        tail = pdf * mills(jnp.abs(x))
        return jnp.where(x < 0.0, tail, 1.0 - tail)

    @ncdf_with_pdf.defjvp
    def _jvp(primals, tangents):
        (x, pdf), (dx, _) = primals, tangents
        return ncdf_with_pdf(x, pdf), pdf * dx

    return ncdf_with_pdf


ncdf_with_pdf = _ncdf_with_pdf_using(mills_ratio)
ncdf_with_pdf.__doc__ = """N(x) given ``pdf`` = phi(x), computed or derived by the caller: no transcendental function.
    Its derivative is ``pdf`` dx, phi exactly rather than the derivative of the approximation (the
    caller's ``pdf`` must be phi(x) as a function of x, so its own tangent is not needed)."""
ncdf_with_pdf_fast = _ncdf_with_pdf_using(mills_ratio_fast)  # the same with :func:`mills_ratio_fast`


def npdf(x):
    return INV_SQRT2PI * jnp.exp(-0.5 * x * x)


def ncdf(x):
    """Standard normal CDF, accurate in both tails (see :func:`mills_ratio`)."""
    return ncdf_with_pdf(x, npdf(x))


def ncdf_fast(x):
    """Standard normal CDF with :func:`mills_ratio_fast` (one division)."""
    return ncdf_with_pdf_fast(x, npdf(x))


# The natural log, fdlibm's algorithm (e_log.c) on whole vectors: x = 2^k m with m in [sqrt(2)/2,
# sqrt(2)), ln m = 2 atanh(f / (2 + f)), f = m - 1, from a degree-14 polynomial in s = f / (2 + f)
# (fdlibm's Lg1-Lg7), ln 2 split in two parts. Under 1 ulp (measured at most 0.8 ulp against
# long double on 330K points from 1e-304 to 1e304; XLA's log 0.5 ulp), and 2.7 times faster than
# XLA:CPU's float64 log on independent values. The kernels call it once per Black-Scholes contract
# and several times per implied-vol solve and American price; not in the American fixed-point
# step, a chain of dependent logs that XLA:CPU runs slower with it (see _qdfp).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01)
_TINY = 2.2250738585072014e-308  # the smallest normal float64


@jax.custom_jvp
def log(x):
    """ln x for float64 arrays, to under 1 ulp: -inf at 0, NaN below 0 and at NaN, inf at inf.
    Differentiable (d ln x = dx / x) to any order, as the American Greeks' nested autodiff needs."""
    x = jnp.asarray(x, jnp.float64)
    # subnormals are scaled by 2^54 into range (XLA:CPU flushes them to zero first, and its own log
    # then gives -inf as this does); zero, negatives, NaN and inf are overwritten at the end
    sub = x < _TINY
    xs = jnp.where(sub, x * 18014398509481984.0, x)
    bits = jax.lax.bitcast_convert_type(xs, jnp.int64)
    hx = bits >> 32
    k = (hx >> 20) - jnp.where(sub, 1023 + 54, 1023)
    hx = hx & 0x000FFFFF
    i = (hx + 0x95F64) & 0x100000  # m below sqrt(2): exponent 0, else -1 (and k + 1)
    m = jax.lax.bitcast_convert_type(((hx | (i ^ 0x3FF00000)) << 32) | (bits & 0xFFFFFFFF), jnp.float64)
    k = k + (i >> 20)
    f = m - 1.0
    s = f / (2.0 + f)
    dk = k.astype(jnp.float64)
    z = s * s
    w = z * z
    big_r = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6]))) + w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
    hfsq = 0.5 * f * f
    out = dk * _LN2_HI - ((hfsq - (s * (hfsq + big_r) + dk * _LN2_LO)) - f)
    out = jnp.where(x > 0.0, out, jnp.where(x == 0.0, -jnp.inf, jnp.nan))
    return jnp.where(x == jnp.inf, jnp.inf, out)


@log.defjvp
def _log_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return log(x), dx / x


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
    d1 = (log(S / K) + (r - q) * T) / sig_t + 0.5 * sig_t
    d2 = d1 - sig_t
    sign = jnp.where(is_call, 1.0, -1.0)
    pdf1 = npdf(d1)
    # phi(d2) = phi(d1) F / K: the second CDF needs no exp of its own
    pdf2 = pdf1 * (S * df_q) / (K * df_r)
    nd1 = ncdf_with_pdf(sign * d1, pdf1)
    nd2 = ncdf_with_pdf(sign * d2, pdf2)
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
# contracts per step of a device's walk over its half (see _runtime.CPU_CHUNK: at 256 no fusion of
# the step is split across threads); at 1M contracts, interleaved, 256 measured 17.5 ms against
# 19.2 ms at 8,192 (the kernel alone 10.6 against 11.4 ms, and steadier)
bsm_kernel.chunk = 256
bsm_second_order_kernel.chunk = 256


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
