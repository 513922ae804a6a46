"""American exercise: price, Greeks and implied volatility, with a reference tree.

* ``method="qdfp"`` (default): the Andersen-Lake-Offengeld fixed-point method (:mod:`._qdfp`)
  with the engine's scheme (:data:`._qdfp.ENGINE`: 6 nodes, 4 fixed-point points, 2 steps, the
  second on ALO's FP-A equation where the drift (r - q) sqrt(T) / sigma is low, 12 premium points,
  its quadratures in variables where the integrands are smooth, the QD+ start from
  Barone-Adesi-Whaley's seed; median 7e-7, p99 1.2e-5 and max 2.8e-4 relative of the method at
  high precision on harsh random contracts, under half the CPU of QuantLib's fast scheme). Contracts
  outside that scheme's domain (the put's rate or yield times T at least 0.3: a 15% yield over two
  years, say) are priced again, in price, Greeks and IV alike, with :data:`._qdfp.WIDE` (12 nodes,
  12 points, 4 steps, 48 points), where the engine's scheme errs to 1e-2 and more (:func:`wide_rows`);
  ``method="qdfp_quantlib"`` uses QuantLib's fast scheme, equal to QuantLib's
  ``QdFpAmericanEngine`` to rounding.
* At or below the exercise boundary (the put's spot at or below B(T)) the value is intrinsic,
  with delta -1 (put) or 1 (call) and gamma, theta, vega and rho 0.
* ``method="bs2002"``: Bjerksund-Stensland 2002 (two-step flat exercise boundary) for a call with
  cost of carry ``b = r - q``; a put uses P(S, K, T, r, b) = C(K, S, T, r - b, -b). Its bivariate
  normal CDF is always at correlation +-sqrt(t1/T) = +-0.786, where Genz's Gauss-Legendre form
  (20 nodes) is accurate to double precision. Within a few 1e-3 of the tree.
* With no dividend (call) or a non-positive rate (put) early exercise never pays and the price is
  the European one. Not modelled: negative rates with the other carry lower still (a put at
  r <= 0 with q < r, a call at q <= 0 with r < q), where early exercise pays within a band between
  two boundaries; such a contract gets the European price floored at intrinsic value, a lower
  bound. Greeks are forward-mode (``jax.jvp``) derivatives of the price; the IV is a
  bracketed Newton on it. :func:`leisen_reimer_price` (numpy) is the reference.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from . import _runtime
from . import _qdfp
from .european import GREEKS, SECOND_ORDER, bsm_kernel, guard, log, ncdf, npdf, valid_inputs
from .implied import iv_kernel

_T1_FRACTION = 0.5 * (math.sqrt(5.0) - 1.0)  # t1 = T (sqrt5 - 1)/2
_RHO = math.sqrt(_T1_FRACTION)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)


def _bvn_lower(a, b, rho: float):
    """P(X < a, Y < b) for standard normals with correlation ``rho`` (|rho| < 0.925), by Plackett's
    identity integrated in theta = asin(r) with Gauss-Legendre."""
    h, k = -a, -b
    asr = math.asin(rho)
    hk = h * k
    hs = 0.5 * (h * h + k * k)
    total = 0.0
    for x, w in zip(_NODES, _WEIGHTS):
        sn = math.sin(asr * (x + 1.0) / 2.0)
        total = total + w * jnp.exp((sn * hk - hs) / (1.0 - sn * sn))
    return total * asr / (4.0 * math.pi) + ncdf(-h) * ncdf(-k)


def _phi(S, T, gamma, H, I, r, b, v):
    sig_t = v * jnp.sqrt(T)
    lam = (-r + gamma * b + 0.5 * gamma * (gamma - 1.0) * v * v) * T
    d = -(log(S / H) + (b + (gamma - 0.5) * v * v) * T) / sig_t
    kappa = 2.0 * b / (v * v) + 2.0 * gamma - 1.0
    return jnp.exp(lam) * S ** gamma * (ncdf(d) - (I / S) ** kappa * ncdf(d - 2.0 * log(I / S) / sig_t))


def _psi(S, T, gamma, H, I2, I1, t1, r, b, v):
    drift1 = (b + (gamma - 0.5) * v * v) * t1
    drift = (b + (gamma - 0.5) * v * v) * T
    s1 = v * jnp.sqrt(t1)
    s = v * jnp.sqrt(T)
    e1 = (log(S / I1) + drift1) / s1
    e2 = (log(I2 * I2 / (S * I1)) + drift1) / s1
    e3 = (log(S / I1) - drift1) / s1
    e4 = (log(I2 * I2 / (S * I1)) - drift1) / s1
    f1 = (log(S / H) + drift) / s
    f2 = (log(I2 * I2 / (S * H)) + drift) / s
    f3 = (log(I1 * I1 / (S * H)) + drift) / s
    f4 = (log(S * I1 * I1 / (H * I2 * I2)) + drift) / s
    lam = -r + gamma * b + 0.5 * gamma * (gamma - 1.0) * v * v
    kappa = 2.0 * b / (v * v) + 2.0 * gamma - 1.0
    return jnp.exp(lam * T) * S ** gamma * (
        _bvn_lower(-e1, -f1, _RHO)
        - (I2 / S) ** kappa * _bvn_lower(-e2, -f2, _RHO)
        - (I1 / S) ** kappa * _bvn_lower(-e3, -f3, -_RHO)
        + (I1 / I2) ** kappa * _bvn_lower(-e4, -f4, -_RHO))


def _bs2002_call(S, K, T, r, b, v):
    """Bjerksund-Stensland 2002 American call (valid where b < r); callers select."""
    t1 = _T1_FRACTION * T
    v2 = v * v
    beta = (0.5 - b / v2) + jnp.sqrt((b / v2 - 0.5) ** 2 + 2.0 * r / v2)
    b_inf = beta / (beta - 1.0) * K
    b_0 = jnp.maximum(K, r / (r - b) * K)
    span = b_inf - b_0
    ht1 = -(b * t1 + 2.0 * v * jnp.sqrt(t1)) * K * K / (span * b_0)
    ht2 = -(b * T + 2.0 * v * jnp.sqrt(T)) * K * K / (span * b_0)
    I1 = b_0 + span * (1.0 - jnp.exp(ht1))
    I2 = b_0 + span * (1.0 - jnp.exp(ht2))
    a1 = (I1 - K) * I1 ** (-beta)
    a2 = (I2 - K) * I2 ** (-beta)
    value = (a2 * S ** beta - a2 * _phi(S, t1, beta, I2, I2, r, b, v)
             + _phi(S, t1, 1.0, I2, I2, r, b, v) - _phi(S, t1, 1.0, I1, I2, r, b, v)
             - K * _phi(S, t1, 0.0, I2, I2, r, b, v) + K * _phi(S, t1, 0.0, I1, I2, r, b, v)
             + a1 * _phi(S, t1, beta, I1, I2, r, b, v) - a1 * _psi(S, T, beta, I1, I2, I1, t1, r, b, v)
             + _psi(S, T, 1.0, I1, I2, I1, t1, r, b, v) - _psi(S, T, 1.0, K, I2, I1, t1, r, b, v)
             - K * _psi(S, T, 0.0, I1, I2, I1, t1, r, b, v) + K * _psi(S, T, 0.0, K, I2, I1, t1, r, b, v))
    return jnp.where(S >= I2, S - K, value)


def _bounded(american, early, S, K, T, r, q, sigma, is_call):
    return _bounded_by(american, early, bsm_kernel(S, K, T, r, q, sigma, is_call)[0], S, K, is_call)


def _bounded_by(american, early, european, S, K, is_call):
    """The American value where early exercise can pay, else the European one; never below the
    European price or intrinsic value."""
    price = jnp.where(early, jnp.maximum(american, european), european)
    return jnp.maximum(price, jnp.maximum(jnp.where(is_call, S - K, K - S), 0.0))


def _bs2002_value(S, K, T, r, q, sigma, is_call):
    # a call on (S, K, r, b) or the transformed put: call on (K, S, r' = q, b' = q - r)
    S_, K_ = jnp.where(is_call, S, K), jnp.where(is_call, K, S)
    r_, b_ = jnp.where(is_call, r, q), jnp.where(is_call, r - q, q - r)
    early = b_ < r_
    safe_r = jnp.where(early, r_, 0.05)
    safe_b = jnp.where(early, b_, 0.0)
    american = _bs2002_call(S_, K_, T, safe_r, safe_b, sigma)
    return _bounded(american, early, S, K, T, r, q, sigma, is_call)


def _as_put(S, K, r, q, is_call):
    """(spot, strike, rate, yield) of the put that equals the contract: a call is the put with spot
    and strike, rate and yield exchanged, C(S, K, r, q) = P(K, S, q, r)."""
    return (jnp.where(is_call, K, S), jnp.where(is_call, S, K), jnp.where(is_call, q, r), jnp.where(is_call, r, q))


def _qdfp_parts(K, T, r, q, sigma, is_call, scheme=_qdfp.ENGINE, layout="loop"):
    """(early, put rate, put yield, boundary): everything of the fixed-point price that does not
    depend on the spot."""
    _, _, r_, q_ = _as_put(K, K, r, q, is_call)
    early = r_ > 0.0  # a put on a non-positive rate is never exercised early
    r_, q_ = jnp.where(early, r_, 0.05), jnp.where(early, q_, 0.0)
    return early, r_, q_, _qdfp.boundary(T, r_, q_, sigma, scheme, layout), scheme, layout


def _qdfp_on_boundary(S, K, T, r, q, sigma, is_call, parts):
    early, r_, q_, (y, xmax), scheme, layout = parts
    S_, K_, put_r, put_q = _as_put(S, K, r, q, is_call)
    m = S_ / K_
    # the European price of the equal put at the contract's own rates (r_, q_ are stand-ins where
    # early exercise never pays), which every contract's bound needs anyway
    european, premium = _qdfp.put_parts(m, T, r_, q_, sigma, y, xmax, scheme, layout, (put_r, put_q))
    # exercised: the intrinsic value written directly, so that a call's delta is 1 exactly
    american = jnp.where(_qdfp.exercised(m, y, xmax), K_ - S_, K_ * (jnp.maximum(european, 0.0) + premium))
    return _bounded_by(american, early, K_ * european, S, K, is_call)


def _qdfp_value_with(scheme, layout="loop"):
    """The fixed-point price under ``scheme``. ``layout`` is how the boundary's quadrature is laid
    out for XLA (:func:`._qdfp.boundary`): "loop" for the price and IV kernels, "chebyshev" for
    the Greeks kernel (see :func:`._qdfp.boundary`); the two agree to ~1e-15."""
    def value(S, K, T, r, q, sigma, is_call):
        parts = _qdfp_parts(K, T, r, q, sigma, is_call, scheme, layout)
        return _qdfp_on_boundary(S, K, T, r, q, sigma, is_call, parts)

    value.scheme, value.layout = scheme, layout
    return value


# "qdfp": the engine's scheme; "qdfp_quantlib": QuantLib's fast scheme; "qdfp_wide": the engine's
# second scheme, for the contracts outside the first one's domain (not a method of its own)
_VALUE = {"qdfp": _qdfp_value_with(_qdfp.ENGINE), "qdfp_quantlib": _qdfp_value_with(_qdfp.QUANTLIB_FAST),
          "bs2002": _bs2002_value, "qdfp_wide": _qdfp_value_with(_qdfp.WIDE, "chebyshev")}
METHODS = ("qdfp", "qdfp_quantlib", "bs2002")
# A method's second scheme: "qdfp" prices the contracts whose put rate or yield times T is at least
# _qdfp.WIDE_X again with _qdfp.WIDE (price, Greeks and IV alike), where its own scheme errs up to
# 1e-2 and more (see _qdfp.WIDE). QuantLib's scheme is kept as QuantLib has it.
_WIDE = {"qdfp": "qdfp_wide"}


def _checked(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown American method {method!r}; expected one of {METHODS}")
    return method


def wide_rows(T, r, q, *, method: str = "qdfp") -> np.ndarray:
    """Indices of the contracts that ``method`` prices with its second scheme: those whose put's
    rate or yield (a call's yield or rate) times T is at least :data:`._qdfp.WIDE_X`. A contract
    with no early exercise (r <= 0 for the put) gets the same European price either way."""
    if method not in _WIDE:
        return np.zeros(0, dtype=np.intp)
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(np.maximum(r, q) * T >= _qdfp.WIDE_X)


def _run(kind, method, arrays, pad, n_out):
    """The kernel of ``kind`` for ``method`` over ``arrays``, the rows outside its scheme's domain
    run again with its second scheme (:func:`wide_rows`)."""
    out = _runtime.run(_kernel(kind, method), arrays, pad, n_out)
    T, r, q = (arrays[i] for i in ((2, 3, 4) if kind != "iv" else (3, 4, 5)))
    rows = wide_rows(T, r, q, method=method)
    if rows.size:
        again = _runtime.run(_kernel(kind, _WIDE[method]), [a[rows] for a in arrays], pad, n_out)
        for o, a in zip(out, again):
            o[rows] = a
    return out


_PAD = [100.0, 100.0, 1.0, 0.05, 0.02, 0.2, True]
CPU_SLICES = (1_024, 65_536)  # padded sizes of the kernel calls on the CPU (see _runtime.pieces)


def _price_kernel(method):
    value = _VALUE[method]

    def kernel(S, K, T, r, q, sigma, is_call):
        ok, (S, K, T, r, q, sigma) = guard(S, K, T, r, q, sigma)
        return (jnp.where(ok, value(S, K, T, r, q, sigma, is_call), jnp.nan),)

    kernel.__name__ = f"american_price_{method}"
    # 4,096 contracts per step (was 512). XLA:CPU splits each of the kernel's large fusions in two
    # for its intra-op threads, which the other device is using; every split costs a hand-off
    # between threads, and at 512 per step those took ~20% of the CPU on session 16's machine
    # (0.766 s of CPU against 0.629 s at 4,096 for the same 655,360 contracts; one device alone on
    # one core, where nothing is split, runs at the 4,096 speed either way). 131,072 random
    # contracts, 15 runs each in one process: 512 1.67 M/s, 4,096 2.01, 8,192 1.97, 16,384 1.82.
    kernel.chunk = 4096
    kernel.cpu_slices = CPU_SLICES
    return kernel


# How far outside its no-arbitrage bounds an American delta (put [-1, 0], call [0, 1]) or gamma
# (>= 0) is brought back: the approximation's own errors, never more. Within ~1e-5 of the
# exercise boundary its smooth pasting is not exact, and the delta of the price formula there
# measured down to -1 - 2e-6 with the engine's scheme and -1 - 1.3e-5 with QuantLib's (the put;
# the call likewise above 1); a deep in-the-money contract at low vol has a gamma of 0 computed
# as -1e-16 / S. Anything further out is left for validation to see.
_DELTA_SLACK = 1e-4
_GAMMA_SLACK = 1e-12


def _within_bounds(delta, gamma, S, is_call):
    lo, hi = jnp.where(is_call, 0.0, -1.0), jnp.where(is_call, 1.0, 0.0)
    delta = jnp.where((delta < lo) & (delta >= lo - _DELTA_SLACK), lo,
                      jnp.where((delta > hi) & (delta <= hi + _DELTA_SLACK), hi, delta))
    gamma = jnp.where((gamma < 0.0) & (gamma * S >= -_GAMMA_SLACK), 0.0, gamma)
    return delta, gamma


def _greeks_kernel(method):
    """Price, the five Greeks and vanna, volga, charm as exact forward-mode derivatives of the price.

    The fixed-point boundary does not depend on the spot, so the spot derivatives (delta, gamma,
    and the spot side of vanna and charm) differentiate only the premium integral: the boundary
    carries tangents for T, r and sigma (first order) and sigma (second order) only."""
    value = _VALUE[method]
    if method.startswith("qdfp"):
        value = _qdfp_value_with(value.scheme, "chebyshev")

    def kernel(S, K, T, r, q, sigma, is_call):
        ok, (S, K, T, r, q, sigma) = guard(S, K, T, r, q, sigma)
        ones = jnp.ones_like(S)

        def f(s, t, rr, v):
            return value(s, K, t, rr, q, v, is_call)

        if method.startswith("qdfp"):  # spot derivatives on the boundary computed once, without tangents
            parts = _qdfp_parts(K, T, r, q, sigma, is_call, value.scheme, value.layout)

            def spot_fn(s):
                return _qdfp_on_boundary(s, K, T, r, q, sigma, is_call, parts)
        else:
            def spot_fn(s):
                return f(s, T, r, sigma)

        def slow_first(s):
            # dV/dT, dV/dr, dV/dsigma: one vmapped jvp, the directions batched
            dirs = jnp.eye(3, dtype=S.dtype)[:, :, None] * ones
            return jax.vmap(lambda d: jax.jvp(lambda t, rr, v: f(s, t, rr, v), (T, r, sigma),
                                              (d[0], d[1], d[2]))[1])(dirs)

        # the spot direction is a separate (unbatched) jvp, so its tangent is a symbolic zero
        # through everything that does not depend on the spot
        slow, slow_s = jax.jvp(slow_first, (S,), (ones,))
        d_t, d_r, d_v = slow
        d_ts, _, d_vs = slow_s  # d2V/dT dS, (d2V/dr dS unused), d2V/dsigma dS

        def delta_fn(s):
            return jax.jvp(spot_fn, (s,), (ones,))

        (price, delta), (_, gamma) = jax.jvp(delta_fn, (S,), (ones,))

        def vega_fn(v):
            return jax.jvp(lambda x: f(S, T, r, x), (v,), (ones,))[1]

        volga = jax.jvp(vega_fn, (sigma,), (ones,))[1]
        delta, gamma = _within_bounds(delta, gamma, S, is_call)
        outs = (price, delta, gamma, -d_t, d_v, d_r, d_vs, volga, -d_ts)
        return tuple(jnp.where(ok, o, jnp.nan) for o in outs)

    kernel.__name__ = f"american_greeks_{method}"
    # 128 contracts per step: on the 2-core AVX2 machine of session 14, 65,536 random contracts took
    # 1,981-2,042 ms at 128 against 2,245-2,373 at 256, 2,673 at 512 and 3,024 at 64 (the IV kernel
    # measured no gain from 128: 1,165 against 1,097 ms, so it keeps 256)
    # (session 16, the engine's new scheme: 128 still best, 0.156-0.159 M/s against 0.134 at 512)
    kernel.chunk = 128 if method.startswith("qdfp") else 2048
    kernel.cpu_slices = CPU_SLICES
    return kernel


_KERNELS: dict = {}


def _kernel(kind: str, method: str):
    if method not in _VALUE:
        raise ValueError(f"unknown American method {method!r}; expected one of {METHODS}")
    key = (kind, method)
    if key not in _KERNELS:
        build = {"price": _price_kernel, "greeks": _greeks_kernel,
                 "iv": _iv_kernel}[kind]
        _KERNELS[key] = build(method)
    return _KERNELS[key]


# input dtypes and number of outputs of each kernel, as american_price/_greeks/_implied_vol call them
_SIGNATURES = {"price": (("<f8",) * 6 + ("|b1",), 1), "greeks": (("<f8",) * 6 + ("|b1",), 9),
               "iv": (("<f8",) * 7 + ("|b1",), 2)}


def prepare(n: int, kinds=("iv", "greeks"), *, method: str = "qdfp") -> list:
    """Start loading the kernels that ``n`` contracts will run through (``kinds`` of ``"price"``,
    ``"greeks"``, ``"iv"``) in background threads, and return their futures: a fresh process
    spends 1.3-1.5 s per American kernel and padded size reading it back from the compile cache,
    on one core (:func:`_runtime.prepare`). The calls that follow wait for what is not ready yet."""
    futures = []
    for kind in kinds:
        dtypes, n_out = _SIGNATURES[kind]
        futures += _runtime.prepare(_kernel(kind, method), n, dtypes, n_out)
    return futures


def american_price(S, K, T, r, q, sigma, is_call, *, method: str = "qdfp") -> np.ndarray:
    """American prices for arrays (or scalars) of contracts: ``method="qdfp"`` (default, the
    Andersen-Lake-Offengeld fixed-point method: median 7e-7, max 2.8e-4 relative of that method
    at high precision on 20,000 random contracts, see :data:`._qdfp.ENGINE`; the contracts of
    :func:`wide_rows` with :data:`._qdfp.WIDE`),
    ``"qdfp_quantlib"`` (QuantLib's fast scheme of that method) or
    ``"bs2002"`` (Bjerksund-Stensland 2002: a closed form, within a few 1e-3, and no faster here:
    its bivariate normal CDFs cost 320 exps). NaN for invalid inputs."""
    arrs, calls = _runtime.as_arrays(S, K, T, r, q, sigma, is_call=is_call)
    return _run("price", _checked(method), arrs + [calls], _PAD, 1)[0]


def american_greeks(S, K, T, r, q, sigma, is_call, *, method: str = "qdfp") -> dict[str, np.ndarray]:
    """American price, delta, gamma, theta, vega, rho, vanna, volga and charm in the raw units of
    :mod:`.european` (per year, per 1.00 of vol and rate): exact derivatives of the approximation."""
    arrs, calls = _runtime.as_arrays(S, K, T, r, q, sigma, is_call=is_call)
    names = GREEKS + SECOND_ORDER
    return dict(zip(names, _run("greeks", _checked(method), arrs + [calls], _PAD, len(names))))


# Two passes: every contract gets _IV_FAST_STEPS secant steps (from the de-Americanized start most
# converge in 3 or 4); the few still unsolved (deep in the money, next to the exercise boundary,
# where the price has a kink in the vol) are solved again, alone, with up to _IV_STEPS. A chunk
# iterates until its slowest contract is done, so one pass with the larger cap would make nearly
# every chunk pay for its one straggler. A contract solved in the second pass repeats the same
# steps from the same start, so the cap changes the cost, never the answer: 4 measured ~10% less
# CPU than 6 on 131,072 random contracts (and ~5% on two synthetic chains), 3 more.
_IV_FAST_STEPS = 4
_IV_STEPS = 40
_IV_TOL = 1e-10  # relative step in sigma at which a contract is done (the model is smooth to ~1e-13)


def _iv_kernel(method):
    value = _VALUE[method]

    def kernel(price, S, K, T, r, q, cap, is_call):
        """``cap``: the most secant steps per contract (an input, so both passes share one
        compiled kernel)."""
        ok = valid_inputs(S, K, T, r, q) & jnp.isfinite(price) & (price >= 0)
        S, K, T, r, q, price = (jnp.where(ok, a, c) for a, c in
                                ((S, 100.0), (K, 100.0), (T, 1.0), (r, 0.05), (q, 0.02), (price, 10.0)))
        intrinsic = jnp.maximum(jnp.where(is_call, S - K, K - S), 0.0)
        # no-arbitrage bound: the strike for a put (the spot for a call), or its present value where
        # the rate (a call's yield) is negative, which it exceeds there (the option is European then)
        upper = jnp.where(is_call, S * jnp.maximum(1.0, jnp.exp(-q * T)), K * jnp.maximum(1.0, jnp.exp(-r * T)))
        tol = 4e-16 * jnp.maximum(S, K) + 1e-13 * price
        price_floor = 8e-16 * jnp.maximum(S, K)  # the price's own rounding: nothing to gain below it
        time_value = price - intrinsic
        status = jnp.where(~ok, 4, jnp.where(time_value < -tol, 1, jnp.where(price >= upper, 2,
                           jnp.where(time_value <= tol, 3, 0))))
        solvable = status == 0
        # the European IV of the same price bounds the American one from above (A >= E at every vol)
        euro_iv, euro_status = iv_kernel(price, S, K, T, r, q, is_call)
        s_max = 60.0 / jnp.sqrt(T)
        hi0 = jnp.where(euro_status == 0, jnp.minimum(euro_iv * (1.0 + 1e-9), s_max), s_max)
        floor_price = value(S, K, T, r, q, jnp.full_like(S, 1e-6), is_call)
        # zero time value: at or below the price at a vanishing vol, or within 1e-6 of the spot of
        # intrinsic value (a hundredth of a cent per $100, below any quote tick; next to the
        # exercise boundary the approximation itself is not monotone in the vol at that scale)
        status = jnp.where(solvable & ((price <= floor_price + tol) | (time_value <= 1e-6 * jnp.maximum(S, K))),
                           3, status)
        solvable = status == 0
        target = jnp.where(solvable, price, 1.0)
        plateau = floor_price - target  # the residual wherever the price is that at a vanishing vol

        sqrt_t = jnp.sqrt(T)
        ln_fk = log(S / K) + (r - q) * T
        s_dq_sqrt_t = S * jnp.exp(-q * T) * sqrt_t

        def european_vega(v):
            d1 = ln_fk / (v * sqrt_t) + 0.5 * v * sqrt_t
            return s_dq_sqrt_t * npdf(d1)

        def step(carry):
            it, v, v_prev, g_prev, lo, g_lo, hi, g_hi, last, active = carry
            live = active & (it < cap)
            g = value(S, K, T, r, q, v, is_call) - target
            below, above = g < 0, g > 0
            # Illinois: an end kept twice in a row has its residual halved, so false position
            # cannot creep from one side
            g_hi = jnp.where(below & (last < 0), 0.5 * g_hi, g_hi)
            g_lo = jnp.where(above & (last > 0), 0.5 * g_lo, g_lo)
            lo, g_lo = jnp.where(below, v, lo), jnp.where(below, g, g_lo)
            hi, g_hi = jnp.where(above, v, hi), jnp.where(above, g, g_hi)
            last = jnp.sign(g)
            # secant on the price alone (order 1.6, one price per step instead of a price and its
            # autodiff vega, ~2.5x the cost); the first step uses the European vega, which the
            # American one approaches wherever early exercise is not imminent
            secant_slope = (g - g_prev) / (v - v_prev)
            # (a chord from the plateau (below) is no slope of the price above it: the price is
            # convex there and the chord's root falls back onto the plateau)
            on_plateau = g == plateau
            slope = jnp.where(jnp.isfinite(secant_slope) & (secant_slope > 0) & (g_prev != plateau),
                              secant_slope, european_vega(v))
            newton = v - g / slope
            # outside the bracket (or on the flat stretch below the vol at which the contract leaves
            # the exercise region, where vega is 0): false position when both ends are priced,
            # else bisection
            regula = lo - g_lo * (hi - lo) / (g_hi - g_lo)
            fallback = jnp.where(jnp.isfinite(regula) & (regula > lo) & (regula < hi), regula, 0.5 * (lo + hi))
            new = jnp.where(jnp.isfinite(newton) & (newton > lo) & (newton < hi), newton, fallback)
            # on the exercise plateau (below the vol at which the contract leaves the exercise
            # region its price is intrinsic, the price at a vanishing vol) no slope says how far the
            # plateau reaches: the European vega would creep across it (a deep call at a 29% yield
            # over 3.7 years crept 0.0017 a step from 0.15 to its 0.447) and false position against
            # a far upper end likewise: bisect
            new = jnp.where(on_plateau, 0.5 * (lo + hi), new)
            # v already prices the quote to rounding, or, where vega is immaterial (deep in the
            # money, next to the exercise boundary, where the approximation's price is flat and
            # not even monotone in the vol), to 1e-9 of the spot (far below any quote tick): keep it
            flat = slope < 1e-3 * S * sqrt_t
            matched = (jnp.abs(g) <= price_floor) | (flat & (jnp.abs(g) <= 1e-9 * jnp.maximum(S, K)))
            new = jnp.where(matched, v, new)
            done = matched | (jnp.abs(new - v) <= _IV_TOL * v)
            return (it + 1, jnp.where(live, new, v), v, g, lo, g_lo, hi, g_hi, last, active & ~(live & done))

        def cond(carry):
            return jnp.any(carry[-1] & (carry[0] < cap))

        # start: the European IV of the price less the early-exercise premium at the European IV
        # (the premium moves little with the vol, so this is close and Newton needs 2 or 3 steps)
        v_e = jnp.where(euro_status == 0, jnp.minimum(euro_iv, hi0), 0.5 * hi0)
        premium = value(S, K, T, r, q, v_e, is_call) - bsm_kernel(S, K, T, r, q, v_e, is_call)[0]
        iv_de, st_de = iv_kernel(jnp.maximum(target - premium, 0.0), S, K, T, r, q, is_call)
        v0 = jnp.where((st_de == 0) & (iv_de > 1e-6) & (iv_de < hi0), iv_de, v_e)
        nan = jnp.full_like(S, jnp.nan)
        carry = (0, v0, nan, nan, jnp.full_like(S, 1e-6), floor_price - target, hi0, nan, jnp.zeros_like(S), solvable)
        _, v, *_, active = jax.lax.while_loop(cond, step, carry)
        status = jnp.where(solvable & active, 5, status)
        return jnp.where(status == 0, v, jnp.nan), status.astype(jnp.int8)

    kernel.__name__ = f"american_iv_{method}"
    # 512 contracts per step (256 before session 16): with the engine's new scheme, 131,072 random
    # contracts ran at 0.253-0.256 M/s at 256, 0.357-0.363 at 512 and 1,024, 0.350 at 2,048
    kernel.chunk = 512 if method.startswith("qdfp") else 4096
    kernel.cpu_slices = CPU_SLICES
    return kernel


def american_implied_vol(price, S, K, T, r, q, is_call, *, method: str = "qdfp") -> tuple[np.ndarray, np.ndarray]:
    """Implied volatility of American prices under ``method`` and a status code per contract
    (:data:`optrader_pipelines.pricing.IV_STATUS`): a safeguarded secant iteration from the
    de-Americanized vol, bracketed above by the European IV of the same price (false position when
    a step leaves the bracket). NaN wherever the status is not 0."""
    arrs, calls = _runtime.as_arrays(price, S, K, T, r, q, is_call=is_call)
    pad = [10.0, 100.0, 100.0, 1.0, 0.05, 0.02, float(_IV_FAST_STEPS), True]
    kernel = _kernel("iv", _checked(method))
    iv, status = _runtime.run(kernel, arrs + [np.full(len(calls), float(_IV_FAST_STEPS)), calls], pad, 2)
    # the contracts outside the scheme's domain are solved once more with its second scheme, with
    # every step they need (they are few): not in the second pass below
    wide = wide_rows(arrs[3], arrs[4], arrs[5], method=method)
    unsolved = status == 5
    unsolved[wide] = False
    for rows, kern in ((np.flatnonzero(unsolved), kernel),
                       (wide, _kernel("iv", _WIDE[method]) if wide.size else None)):
        if rows.size:
            iv_s, status_s = _runtime.run(kern, [a[rows] for a in arrs] + [np.full(rows.size, float(_IV_STEPS)),
                                                                            calls[rows]], pad, 2)
            iv[rows], status[rows] = iv_s, status_s
    return iv, status.astype(np.int8)


def _max_over_time(a, c, sig, T):
    """max over t in (0, T] of a / (sig sqrt t) + c sqrt t for a < 0 (numpy)."""
    x_t = np.sqrt(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_star = np.sqrt(np.where(c < 0, a / (sig * np.where(c < 0, c, -1.0)), np.inf))
    x = np.minimum(x_star, x_t)
    return a / (sig * x) + c * x


def early_exercise_premium_bound(S, K, T, r, q, sigma, is_call) -> np.ndarray:
    """An upper bound on the early-exercise premium (American minus European price), numpy.

    From the premium's integral representation with the boundary replaced by its bound on the
    safe side: a put's boundary never exceeds its value at expiry, X = K min(1, r/q), so its premium
    is at most r K T max_t N(-d-(S/X, t)); a call's never falls below its value at expiry,
    X = K max(1, r/q), so its premium is at most q S T max_t N(d+(S/X, t)). The max over t has a closed form. Where the
    bound is far below the price's rounding, the European formula is the American value."""
    S, K, T, r, q, sig = (np.asarray(a, dtype=np.float64) for a in (S, K, T, r, q, sigma))
    is_call = np.asarray(is_call, dtype=bool)
    out = np.full(np.broadcast(S, K, T, r, q, sig, is_call).shape, np.inf)
    with np.errstate(all="ignore"):
        # put: a = ln(X/S), c = -(r - q - sig^2/2)/sig
        X = K * np.minimum(1.0, np.where(q > 0, r / np.where(q > 0, q, 1.0), 1.0))
        a_p = np.log(X / S)
        d_p = _max_over_time(a_p, -(r - q - 0.5 * sig * sig) / sig, sig, T)
        put = np.where(r <= 0, 0.0, np.where(a_p < 0, r * K * T * ndtr(d_p), np.inf))
        # call: the boundary rises with the time to expiry from X = K max(1, r/q), its lower bound
        b = r - q
        X_c = K * np.maximum(1.0, np.where(q > 0, r / np.where(q > 0, q, 1.0), 1.0))
        a_c = np.log(S / X_c)
        d_c = _max_over_time(a_c, (b + 0.5 * sig * sig) / sig, sig, T)
        call = np.where(q <= 0, 0.0, np.where(a_c < 0, q * S * T * ndtr(d_c), np.inf))
        out = np.where(is_call, call, put)
    return np.where(np.isfinite(out), out, np.inf)


def leisen_reimer_price(S, K, T, r, q, sigma, is_call, steps: int = 2001, american: bool = True) -> np.ndarray:
    """Leisen-Reimer binomial tree (Peizer-Pratt inversion 2), vectorized over contracts in numpy:
    the reference for :func:`american_price`. ``steps`` is made odd."""
    S, K, T, r, q, sigma = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, dtype=float)) for a in
                                                  (S, K, T, r, q, sigma)))
    calls = np.broadcast_to(np.atleast_1d(is_call), S.shape)
    n = steps if steps % 2 else steps + 1
    dt = T / n
    sig_t = sigma * np.sqrt(T)
    d1 = (np.log(S / K) + (r - q + 0.5 * sigma ** 2) * T) / sig_t
    d2 = d1 - sig_t

    def pp(z):
        w = z / (n + 1.0 / 3.0 + 0.1 / (n + 1.0))
        return 0.5 + np.sign(z) * np.sqrt(0.25 - 0.25 * np.exp(-w * w * (n + 1.0 / 6.0)))

    p = pp(d2)
    p_bar = pp(d1)
    growth = np.exp((r - q) * dt)
    u = growth * p_bar / p
    d = (growth - p * u) / (1.0 - p)
    disc = np.exp(-r * dt)
    sign = np.where(calls, 1.0, -1.0)[:, None]
    j = np.arange(n + 1)[None, :]
    spots = S[:, None] * u[:, None] ** (n - j) * d[:, None] ** j
    values = np.maximum(sign * (spots - K[:, None]), 0.0)
    for step in range(n - 1, -1, -1):
        values = disc[:, None] * (p[:, None] * values[:, :-1] + (1.0 - p[:, None]) * values[:, 1:])
        if american:
            spots = spots[:, :-1] / u[:, None]
            values = np.maximum(values, sign * (spots - K[:, None]))
    return values[:, 0]
