"""Implied volatility from European prices: exact to machine precision, branch-free, vectorized.

The price is reduced to the normalized out-of-the-money Black price
``beta = (undiscounted price - intrinsic) / sqrt(F K)`` at ``x = -|ln(F/K)|``, and
``b(x, s) = beta`` is solved for the total volatility ``s = sigma sqrt(T)``:

* the inflection point ``s_c = sqrt(2|x|)`` splits the problem in two. Far below it (region 0,
  ``beta < b(x, s_l)``: b is nearly exp(-x^2 / 2s^2) there) the start is three Newton steps in
  ln s on ``ln b = ln beta`` written with the Mills ratio, from the root of its leading term
  ``-x^2/2s^2``; between s_l and s_u a cubic Hermite interpolation of the inverse; above s_u the
  large-s form ``N(-s/2) = (e^{x/2} - beta) / (e^{x/2} + e^{-x/2})``.
* third-order Householder steps on ``b - beta`` use the closed-form ratios ``b''/b' = x^2/s^3 - s/4`` and
  ``b'''/b' = (b''/b')^2 - 3x^2/s^4 - 1/4``, inside a bracket that falls back to bisection;
* a contract is done after a step below 1e-5 relative (fourth order: the error left is ~1e-20);
  from the starts below that is 2 steps for every one of 1M random contracts. Every contract
  gets those 2 steps; the few that need more are solved again, to convergence, in a second pass
  (:func:`implied_vol`).

Status codes (:data:`IV_STATUS`) say why an IV is NaN; an IV is never clamped or set to 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from . import _runtime
from .european import INV_SQRT2PI, log, mills_ratio, valid_inputs

IV_STATUS = {
    0: "ok",
    1: "below intrinsic",
    2: "above upper bound",
    3: "zero time value",
    4: "invalid input",
    5: "no convergence",
}
IV_STATUS_ALL = {**IV_STATUS, 6: "no bid"}

_S_MAX = 60.0  # total volatility bracket (sigma sqrt(T)); 500% for 3 years is 8.7
_MAX_STEPS = 16
_UNROLLED = 2  # every one of 1M random contracts converges in 2 steps from the starts below; a loop does the rest
_STEP_TOL = 1e-11  # a third-order step this small leaves an error of order 1e-33
# A fourth-order step that moved s by less than this is the last one: it left an error of order
# 1e-20 (times a modest constant). Saves the confirming step every contract used to take: the worst
# |d sigma| stays 4.5e-12 on 1M random contracts and 1.3e-11 on a grid of 0.5-800% vol, 1 day to 10
# years and |ln K/S| <= 2.5, as with the confirming step.
_LAST_STEP = 1e-5


def _b_and_ratios(x, s, ex):
    """b(x, s), b'(s) and the ratios b''/b' and b'''/b'. One exp serves all: e^{x/2} phi(h + t)
    and e^{-x/2} phi(h - t) both equal b'(s), so each CDF term is b' times a Mills ratio
    (h - t < 0 always, since x <= 0)."""
    h = x / s
    t = 0.5 * s
    b1 = INV_SQRT2PI * jnp.exp(-0.5 * (h * h + t * t))
    up = h + t
    b1_r = b1 * mills_ratio(jnp.abs(up))
    first = jnp.where(up < 0.0, b1_r, ex - b1_r)  # e^{x/2} N(h + t)
    b = first - b1 * mills_ratio(t - h)  # less e^{-x/2} N(h - t)
    x2 = x * x
    r2 = x2 / (s * s * s) - 0.25 * s
    r3 = r2 * r2 - 3.0 * x2 / (s * s * s * s) - 0.25
    return b, b1, r2, r3


def _hermite_inverse(beta, b_a, s_a, d_a, b_b, s_b, d_b):
    """Cubic Hermite interpolation of the inverse s(b) between (b_a, s_a) and (b_b, s_b) with
    slopes ds/db = d_a, d_b; clipped to [s_a, s_b]."""
    w = b_b - b_a
    u = jnp.clip((beta - b_a) / w, 0.0, 1.0)
    u2 = u * u
    u3 = u2 * u
    s = ((2 * u3 - 3 * u2 + 1) * s_a + (u3 - 2 * u2 + u) * w * d_a
         + (-2 * u3 + 3 * u2) * s_b + (u3 - u2) * w * d_b)
    return jnp.clip(s, s_a, s_b)


_R0_STEPS = 3


def _region0_start(ax, beta):
    """The start in region 0 (total vol s for |x| = ``ax`` and ``beta``): Newton in u = ln s on
    ln b(x, s) = ln beta, written with the Mills ratio R as
      ln b = ln(phi-scale) - x^2/2s^2 - s^2/8 + ln(R(|x|/s - s/2) - R(|x|/s + s/2)),
    whose slope d ln b / du = s b'/b = s / (R(|x|/s - s/2) - R(|x|/s + s/2)) is exact and free
    (b = b' times that difference of Mills ratios). The function is concave in u, so from the left
    (the root of -x^2/2s^2 = ln beta) the iterates rise monotonically and converge quadratically:
    after three, 1M random contracts are within 3e-2 relative (median 2e-3), close enough for the
    Householder steps on ``b - beta`` (the log objective those steps would otherwise need here
    costs two logs per contract: a fifth of the whole IV)."""
    big_l = -log(beta)
    u = log(ax / jnp.sqrt(2.0 * big_l))
    for _ in range(_R0_STEPS):
        s_it = jnp.exp(u)
        z1 = ax / s_it - 0.5 * s_it
        x2s2 = (ax / s_it) ** 2
        ratio_gap = mills_ratio(z1) - mills_ratio(z1 + s_it)
        resid = big_l + log(INV_SQRT2PI * ratio_gap) - 0.5 * x2s2 - 0.125 * s_it * s_it
        u = u - resid * ratio_gap / s_it
    return jnp.exp(u)


# A chunk computes the region-0 start on its region-0 contracts only, gathered into an array of an
# eighth or a quarter of its length, the smallest they fit in (random contracts: 10% are in
# region 0; the start costs about a Householder step). Otherwise (a real chain's far wings: 67% of
# the SPX chain in ../shared/data) it computes it for all. An eighth rather than a quarter, and the
# two-level count below rather than jnp.nonzero's cumsum, made the whole IV 8% faster at 1M.
_COMPACT_FRACTIONS = (8, 4)


def _prefix_count(mask):
    """Inclusive running count of a boolean mask (int32), in two levels (within rows of 128, then
    the rows' totals): XLA:CPU's cumsum along a long axis costs several times more."""
    n = mask.shape[0]
    m = mask.astype(jnp.int32)
    if n % 128:
        return jnp.cumsum(m)
    rows = jnp.cumsum(m.reshape(n // 128, 128), axis=1)
    offsets = jnp.cumsum(rows[:, -1]) - rows[:, -1]
    return (rows + offsets[:, None]).reshape(-1)


def _compacted(mask, fn, *args):
    """``fn(*args)`` where ``mask`` holds (elsewhere unspecified): on the masked elements only,
    gathered, when they fit in 1/8 or 1/4 of the array. The same values either way: the function
    is elementwise."""
    n = mask.shape[0]
    count = _prefix_count(mask)
    caps = sorted({max(n // f, 1) for f in _COMPACT_FRACTIONS})

    def compact(cap):
        def branch(_):
            slot = jnp.where(mask, count - 1, cap)  # cap: out of range, dropped
            idx = jnp.full(cap, n, jnp.int32).at[slot].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
            out = fn(*(a.at[idx].get(mode="fill", fill_value=1.0) for a in args))  # n: an unused slot
            return jnp.zeros_like(args[0]).at[idx].set(out, mode="drop")
        return branch

    which = sum((count[-1] > cap).astype(jnp.int32) for cap in caps)  # the first cap that holds them
    return jax.lax.switch(which, [compact(cap) for cap in caps] + [lambda _: fn(*args)], None)


def solve_total_vol(x, beta, max_steps: int = _MAX_STEPS, loop: bool = True, ex=None):
    """Total volatility s with b(x, s) = beta, for x <= 0 and 0 < beta < e^{x/2} (elementwise),
    and whether each contract is still unconverged: after ``_UNROLLED`` steps, then (``loop``)
    after a loop of up to ``max_steps`` in all.

    Four regions of beta, split as in Jaeckel's "Let's be rational" by the inflection point s_c
    and the points s_l, s_u where the tangent at s_c meets 0 and the upper bound: below b_l a
    start solved on the log form (:func:`_region0_start`); between b_l and b_u a cubic Hermite
    interpolation of the inverse as the start; above b_u the large-s form. ``ex`` is e^{x/2} where
    the caller has it (else computed)."""
    ex = jnp.exp(0.5 * x) if ex is None else ex
    emx = 1.0 / ex
    ax = -x
    s_c = jnp.sqrt(2.0 * ax)
    d_c = INV_SQRT2PI * ex  # b'(s_c) = e^{-x/2} phi(s_c), as phi(s_c) = e^{x} / sqrt(2 pi)
    b_c = 0.5 * ex - d_c * mills_ratio(s_c)  # e^{x/2} / 2 - e^{-x/2} N(-s_c)
    s_l = jnp.maximum(s_c - b_c / d_c, 0.0)
    s_u = jnp.minimum(s_c + (ex - b_c) / d_c, _S_MAX)
    # a contract needs b at s_l (beta <= b_c: regions 0 and 1) or at s_u (regions 2 and 3), never
    # both: one evaluation at the side it is on
    low_side = beta <= b_c
    s_side = jnp.where(low_side, jnp.maximum(s_l, 1e-300), s_u)
    b_side, d_side, _, _ = _b_and_ratios(x, s_side, ex)
    b_side = jnp.where(low_side & (s_l <= 0), 0.0, b_side)  # b(0) = 0
    region = jnp.where(low_side, jnp.where(beta < b_side, 0, 1), jnp.where(beta <= b_side, 2, 3))
    s_lo = _compacted(region == 0, _region0_start, ax, beta)
    # regions 1 and 2: Hermite interpolation of the inverse function between s_l and s_c, or s_c and s_u
    inv_side, inv_c = 1.0 / jnp.maximum(d_side, 1e-300), 1.0 / d_c
    s_mid = _hermite_inverse(beta, jnp.where(low_side, b_side, b_c), jnp.where(low_side, s_l, s_c),
                             jnp.where(low_side, inv_side, inv_c), jnp.where(low_side, b_c, b_side),
                             jnp.where(low_side, s_c, s_u), jnp.where(low_side, inv_c, inv_side))
    # region 3: large-s form N(-s/2) = (e^{x/2} - beta) / (e^{x/2} + e^{-x/2})
    # (total vol above s_u, e.g. 80% for 3 years at the money: rare). The inverse CDF is costly, so
    # a chunk computes it only when one of its contracts is there, and then on those contracts
    # only, gathered (1M random contracts: a third of the chunks of 256 have one; 9% less time
    # than the inverse CDF of the whole chunk, bitwise the same IVs).
    tail = jnp.clip((ex - beta) / (ex + emx), 1e-300, 0.5)
    s_hi = jax.lax.cond(jnp.any(region == 3), lambda p: _compacted(region == 3, lambda t: -2.0 * ndtri(t), p),
                        jnp.zeros_like, tail)
    lo0 = jnp.select([region == 0, region == 1, region == 2], [jnp.zeros_like(s_c), s_l, s_c], s_u)
    hi0 = jnp.select([region == 0, region == 1, region == 2], [s_l, s_c, s_u], jnp.full_like(s_c, _S_MAX))
    s0 = jnp.select([region == 0, (region == 1) | (region == 2)], [s_lo, s_mid], s_hi)
    s0 = jnp.where(jnp.isfinite(s0) & (s0 > lo0) & (s0 < hi0), s0, 0.5 * (lo0 + hi0))

    def step(carry):
        it, s, lo, hi, active = carry
        b, b1, r2, r3 = _b_and_ratios(x, s, ex)
        g = b - beta
        nu = -g / b1
        delta = nu * (1.0 + 0.5 * r2 * nu) / (1.0 + nu * (r2 + r3 * nu / 6.0))
        lo_n = jnp.where(g < 0, s, lo)
        hi_n = jnp.where(g > 0, s, hi)
        converged = (jnp.abs(delta) <= _STEP_TOL * s) | (g == 0)
        s_new = s + jnp.where(g == 0, 0.0, delta)
        bad = ~converged & (~jnp.isfinite(s_new) | (s_new <= lo_n) | (s_new >= hi_n))
        s_new = jnp.where(bad, 0.5 * (lo_n + hi_n), s_new)
        # fourth order: a step that moved s by less than _LAST_STEP left an error of order
        # _LAST_STEP^4, far below rounding, so the contract is done without a step to confirm it
        done = converged | (~bad & (jnp.abs(delta) <= _LAST_STEP * s))
        s_out = jnp.where(active, s_new, s)
        return (it + 1, s_out, jnp.where(active, lo_n, lo), jnp.where(active, hi_n, hi), active & ~done)

    def cond(carry):
        it, _, _, _, active = carry
        return (it < max_steps) & jnp.any(active)

    carry = (0, s0, lo0, hi0, jnp.ones_like(beta, dtype=bool))
    for _ in range(min(_UNROLLED, max_steps)):  # unrolled: XLA fuses these steps into one pass
        carry = step(carry)
    if loop:
        carry = jax.lax.while_loop(cond, step, carry)
    _, s, _, _, active = carry
    return s, active


def _iv(price, S, K, T, r, q, is_call, loop):
    ok_in = valid_inputs(S, K, T, r, q) & jnp.isfinite(price) & (price >= 0)
    S, K, T, r, q, price = (jnp.where(ok_in, a, b) for a, b in
                            ((S, 100.0), (K, 100.0), (T, 1.0), (r, 0.0), (q, 0.0), (price, 10.0)))
    F = S * jnp.exp((r - q) * T)
    undisc = price * jnp.exp(r * T)
    sign = jnp.where(is_call, 1.0, -1.0)
    intrinsic = jnp.maximum(sign * (F - K), 0.0)
    time_value = undisc - intrinsic
    fk = F / K
    x = -jnp.abs(log(fk))
    # e^{x/2} and sqrt(F K) from sqrt(F/K), without an exp: e^{x/2} is sqrt(F/K) or its inverse,
    # whichever is at most 1
    root = jnp.sqrt(fk)
    b_max = jnp.minimum(root, 1.0 / root)
    beta = time_value / (K * root)
    tol = 4e-16 * jnp.maximum(F, K)
    status = jnp.where(~ok_in, 4,
             jnp.where(time_value < -tol, 1,
             jnp.where(beta >= b_max, 2,
             jnp.where(time_value <= tol, 3, 0))))
    solvable = status == 0
    beta_ = jnp.where(solvable, beta, 0.5 * b_max)
    s, unconverged = solve_total_vol(x, beta_, loop=loop, ex=b_max)
    status = jnp.where(solvable & (unconverged | ~jnp.isfinite(s)), 5, status)
    iv = jnp.where(status == 0, s / jnp.sqrt(T), jnp.nan)
    return iv, status.astype(jnp.int8)


def iv_kernel(price, S, K, T, r, q, is_call):
    """IV and status (int8) of European prices: every contract to convergence (up to _MAX_STEPS)."""
    return _iv(price, S, K, T, r, q, is_call, loop=True)


def iv_two_steps_kernel(price, S, K, T, r, q, is_call):
    """As :func:`iv_kernel`, with the _UNROLLED steps only: status 5 where a contract needs more."""
    return _iv(price, S, K, T, r, q, is_call, loop=False)


# contracts per step of a device's walk (see _runtime.CPU_CHUNK). At 1M contracts, interleaved in
# one process: 36.2 ms at 256 against 46.9 ms at 32,768 (the kernel alone 32 against 41-55 ms),
# 39.5 at 128, 54-57 at 512-1,024.
iv_kernel.chunk = iv_two_steps_kernel.chunk = 256
# the full kernel runs the second pass, usually a handful of contracts: on the CPU in pieces from
# this ladder (see _runtime.pieces), so one straggler costs a call of 512 rather than of 4,096
# (0.66 against 1.27 ms at 1M contracts)
iv_kernel.cpu_slices = (512, 4_096, 65_536)
_IV_PAD = [10.0, 100.0, 100.0, 1.0, 0.0, 0.0, True]


def implied_vol(price, S, K, T, r, q, is_call) -> tuple[np.ndarray, np.ndarray]:
    """Black-Scholes-Merton implied volatility of European prices and a status code per contract
    (0 ok; see :data:`IV_STATUS`). NaN wherever the status is not 0.

    Two passes: every contract gets the _UNROLLED Householder steps that nearly all need; the rest
    are solved again, alone, to convergence. In one pass each chunk of 256 contracts would test
    after its steps whether any contract needs another, and those tests (with the loop around
    them) cost about a tenth of the whole at 1M contracts; none of 1M random contracts needs the
    loop (about 1 in 120 of a grid of 1-day to 10-year, 0.5-500% vol contracts does, mostly 1-day
    at-the-money ones at low vol). A contract solved in the second pass repeats the same steps
    from the same start, so the split changes the cost, never the answer."""
    arrs, calls = _runtime.as_arrays(price, S, K, T, r, q, is_call=is_call)
    iv, status = _runtime.run(iv_two_steps_kernel, arrs + [calls], _IV_PAD, 2)
    slow = np.flatnonzero(status == 5)
    if slow.size:
        iv_s, status_s = _runtime.run(iv_kernel, [a[slow] for a in arrs] + [calls[slow]], _IV_PAD, 2)
        iv[slow], status[slow] = iv_s, status_s
    return iv, status.astype(np.int8)

