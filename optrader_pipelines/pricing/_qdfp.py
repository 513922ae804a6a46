"""American put by the Andersen-Lake-Offengeld (2016) fixed-point method, vectorized in JAX.

The early-exercise boundary B(tau) of a put is found on Chebyshev nodes in sqrt(tau) and the price
is the European price plus the early-exercise premium integrated along that boundary:

1. start: the QD+ boundary (Li 2010) at each node, by Halley's method on its boundary equation;
2. refine: one Jacobi-Newton step and ``fp_steps - 1`` plain steps of the fixed-point equation
   B(tau) = K e^{-(r-q) tau} N(tau, B) / D(tau, B), with (ALO's "FP-B")
   N = Phi(d-(tau, B/K)) + r Int_0^tau e^{r u} Phi(d-(tau-u, B(tau)/B(u))) du and
   D = Phi(d+(tau, B/K)) + q Int_0^tau e^{q u} Phi(d+(tau-u, B(tau)/B(u))) du
   (Gauss-Legendre); with ``fp_a_drift`` the plain steps use ALO's "FP-A" (the same equation with
   N and D from the derivative of value matching, see :func:`boundary`) where the drift
   (r - q) sqrt(T) / sigma is low, where it converges faster;
3. price: p = p_European + Int_0^T [r K e^{-r t} Phi(-d-(t, S/B(T-t))) - q S e^{-q t} Phi(-d+(t, S/B(T-t)))] dt
   (Gauss-Legendre).

The boundary is interpolated as H(z) = ln(B/X)^2 with X = K min(1, r/q), z = 2 sqrt(tau/T) - 1, the
form in which it is smooth. The quadratures are Gauss-Legendre either in QuantLib's variables (u and
z = sqrt(t): ``rule="plain"``) or in angles that make both integrands smooth (``rule="smooth"``):
u = tau (1 - cos phi) / 2, so that sqrt(u) (the boundary near expiry) and sqrt(tau - u) (the
integrand's kink at u = tau) are smooth in phi, and z = sqrt(T) sin theta, so that sqrt(T - t) (the
boundary near expiry again, at the upper end of the premium integral) is smooth in theta. In those
variables Gauss-Legendre converges fast and 4 and 12 points do what 6 and 27 did in QuantLib's.

The engine uses :data:`ENGINE` (6 nodes, 4-point fixed-point quadrature, 2 steps (the plain one
FP-A at low drift), 12-point price quadrature, smooth rule, the QD+ start by 2 Halley steps from
Barone-Adesi-Whaley's seed);
QuantLib's "fast" scheme is :data:`QUANTLIB_FAST` (8 nodes, 7 points, 2 steps, 27 points, plain
rule). Both are within about 1e-5 (median 1e-6, max about 3e-4) of the method at high precision;
:class:`Scheme` builds others. Every step is a fixed number of array operations, so the whole price
is differentiable with ``jax.jvp`` (the Greeks are the exact derivatives of this approximation).

Callers handle the cases with no early exercise (r <= 0) and invalid inputs; a call uses
C(S, K, r, q) = P(K, S, q, r).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

# the normal CDF with the one-division Mills ratio (4e-15 relative): ~180 of them per contract, and
# the price kernel ran 1.82 -> 1.98 M/s with it (session 17, alternating in one process)
from .european import log, npdf
from .european import ncdf_fast as ncdf
from .european import ncdf_with_pdf_fast as ncdf_with_pdf

class Scheme:
    """A fixed-point scheme: Chebyshev nodes of the boundary, Gauss-Legendre points of the
    fixed-point integrals, fixed-point steps (a Jacobi-Newton step, then plain ones), points of the
    premium integral and Halley steps of the QD+ start (at least 2 are taken), the start and the
    quadrature variables (``rule``, see the module docstring), with the constants they need."""

    def __init__(self, name: str, nodes: int, fp_points: int, fp_steps: int, price_points: int,
                 halley_steps: int, start: str = "xmax", rule: str = "plain", fp_loop: bool = False,
                 fp_a_drift: float | None = None):
        if start not in ("xmax", "baw"):
            raise ValueError(f"unknown QD+ start {start!r}; expected 'xmax' or 'baw'")
        if rule not in ("plain", "smooth"):
            raise ValueError(f"unknown quadrature rule {rule!r}; expected 'plain' or 'smooth'")
        if fp_a_drift is not None and rule != "smooth":
            raise ValueError("fp_a_drift (FP-A steps) needs rule='smooth'")
        self.rule = rule
        self.fp_loop = fp_loop  # the plain fixed-point steps in a lax.fori_loop (compiles faster, runs slower)
        # the plain steps' equation: FP-B throughout (None, QuantLib's for r != q), or FP-A where the
        # drift (r - q) sqrt(T) / sigma is below fp_a_drift - FP_A_RAMP, FP-B above fp_a_drift and a
        # smooth blend of the two between (see :func:`boundary`). FP-A needs the smooth rule: its
        # integrands' 1 / sqrt(tau - u) is smooth only in its variable (with the plain rule the
        # engine's counts err to 3e-2)
        self.fp_a_drift = fp_a_drift
        self.name, self.nodes, self.fp_points, self.fp_steps = name, nodes, fp_points, fp_steps
        self.price_points, self.halley_steps, self.start = price_points, halley_steps, start
        n = nodes - 1
        self.z = -np.cos(np.arange(nodes) * np.pi / n)  # ascending, z[0] = -1 is tau = 0
        # Chebyshev coefficients from node values: c = from_nodes @ f
        self.from_nodes = np.linalg.inv(np.cos(np.outer(np.arccos(self.z), np.arange(nodes))))
        fp_x, fp_w = np.polynomial.legendre.leggauss(fp_points)
        pr_x, pr_w = np.polynomial.legendre.leggauss(price_points)
        if rule == "plain":  # QuantLib's: Gauss-Legendre in u and in z themselves
            self.fp_s, self.fp_w = 0.5 * (fp_x + 1.0), fp_w  # u = tau s on (0, tau)
            self.pr_s, self.pr_w = 0.5 * (pr_x + 1.0), pr_w  # z = sqrt(T) s on (0, sqrt(T))
            self.pr_cheb = 2.0 * np.sqrt(1.0 - self.pr_s ** 2) - 1.0
        else:
            # u = tau (1 - cos phi) / 2: sqrt(u) and sqrt(tau - u) are smooth in phi
            phi = 0.5 * np.pi * (fp_x + 1.0)
            self.fp_s, self.fp_w = np.sin(0.5 * phi) ** 2, fp_w * 0.5 * np.pi * np.sin(phi)
            # z = sqrt(T) sin theta: sqrt(T - t) = sqrt(T) cos theta is smooth in theta
            theta = 0.25 * np.pi * (pr_x + 1.0)
            self.pr_s, self.pr_w = np.sin(theta), pr_w * 0.5 * np.pi * np.cos(theta)
            self.pr_cheb = 2.0 * np.cos(theta) - 1.0
        self.fp_sqrt_s, self.fp_sqrt_1ms = np.sqrt(self.fp_s), np.sqrt(1.0 - self.fp_s)
        # (pr_cheb: the Chebyshev coordinate 2 sqrt(tau / T) - 1 of the boundary time tau = T - z^2)
        # Every point at which the boundary is interpolated sits at a fixed Chebyshev coordinate
        # (the fixed-point points at 2 sqrt(u/T) - 1 = (1 + z_i) sqrt(s_j) - 1, the premium points at
        # pr_cheb), so the interpolation is a constant linear map of the node values: H at a point
        # is weights @ H(nodes), with the node tau = 0 (where H = 0) dropped.
        self.node_frac = (0.5 * (1.0 + self.z[1:])) ** 2  # tau_i / T
        self.fp_interp = [self._weights((1.0 + self.z[1:]) * np.sqrt(s) - 1.0) for s in self.fp_s]  # (n, n) per point
        self.fp_c1 = 1.0 / self.fp_sqrt_1ms  # 1 / sqrt(1 - s_j): ivt(tau - u) = ivt(tau) c1_j
        self.pr_interp = self._weights(self.pr_cheb)  # (price_points, n)

    def _weights(self, t) -> np.ndarray:
        """Rows w with sum_l w[l] H(node l + 1) = the Chebyshev interpolant of H at each ``t``."""
        vander = np.polynomial.chebyshev.chebvander(np.asarray(t, dtype=float), self.nodes - 1)
        return (vander @ self.from_nodes)[:, 1:]

    def __repr__(self) -> str:
        return (f"Scheme({self.name!r}, nodes={self.nodes}, fp_points={self.fp_points}, fp_steps={self.fp_steps}, "
                f"price_points={self.price_points}, halley_steps={self.halley_steps}, start={self.start!r}, rule={self.rule!r}, "
                f"fp_loop={self.fp_loop}, fp_a_drift={self.fp_a_drift})")


# QuantLib's QdFpAmericanEngine.fastScheme() (its QD+ start by Halley from X, 8 steps here).
QUANTLIB_FAST = Scheme("quantlib_fast", nodes=8, fp_points=7, fp_steps=2, price_points=27, halley_steps=8)
# The engine's scheme: 6 nodes, 4 fixed-point points, 12 premium points, 2 Halley steps from the BAW
# seed, smooth rule (session 16; before it 7 nodes, 6 points, 27 points, 4 Halley steps, plain
# rule), and since session 18 two fixed-point steps instead of three: the Jacobi-Newton step on
# FP-B, then one plain step on FP-A where the drift (r - q) sqrt(T) / sigma is below
# fp_a_drift - FP_A_RAMP = 1.3, on FP-B above 1.4, blended between (see :func:`boundary`). One FP-A
# step converges about as far as two FP-B steps; where the drift is high, FP-A's integrands
# phi(d(tau - u)) / (v sqrt(tau - u)) peak within a fraction of the interval and 4 points miss them
# (errors to 0.7 at drift 4), while FP-B converges within two steps there. Against the method at
# high precision (24 nodes, 24 points, 8 steps, 96 points, smooth rule), relative error where the
# price is at least 1e-4 of the spot or strike, median / p99 / p99.9 / max, this scheme against the
# session-16 one (3 FP-B steps):
# - 20,000 random puts and calls, 1 day to 3 years, vol 5-100%, r 0.1-6%, q 0-4% (two draws):
#   6.7e-7 / 1.2e-5 / 4.9e-5 / 2.8e-4 and 6.7e-7 / 1.3e-5 / 6.2e-5 / 3.0e-4 (before: 6.3e-7 / 2.5e-5 /
#   7.4e-5 / 3.9e-4 and 6.5e-7 / 2.5e-5 / 7.8e-5 / 2.9e-4); far out-of-the-money puts (S/K above 1.2)
#   come out a little worse (p99 2.5e-5 against 1.4e-5), in- and at-the-money ones better
#   (9.8e-6 against 3.3e-5 at S/K 0.9-1);
# - 10,000 contracts from 1e-6 to 30% above their exercise boundary (two draws): 1.7e-7 / 2.5e-5 /
#   1.5e-4 / 6.3e-4 and 2.2e-7 / 2.5e-5 / 1.1e-4 / 1.2e-3 (before: 6.9e-8 / 3.0e-5 / 1.2e-4 / 6.2e-4 and
#   9.8e-8 / 3.0e-5 / 1.0e-4 / 1.1e-3);
# - extreme random contracts inside the domain (1 hour to 30 years, strikes within e^{+-1} of spot,
#   vol 0.1-500%, r and q to 50%, the put's rate and yield times T below WIDE_X), 13,663 and 27,583
#   priced: p99 2.0e-5 and 2.4e-5, p99.9 2.0e-4 and 1.4e-4 (before: 3.9e-5 and 3.6e-5, 3.4e-4 and
#   3.1e-4); max 3.8e-2 and 2.9e-2 either way (vol 6% at rates 18-22%, drift above 3: FP-B there,
#   and three steps do no better);
# - the Greeks (exact derivatives of each) against the method at 12 nodes, 12 points, 5 steps, 48
#   points: as close as before (delta p99 3.5e-5, vega 5.5e-5 of their 90th percentile); where
#   r and q are within 0.3% of each other (where the boundary's limit at expiry, min(1, r/q),
#   has its kink) rho errs up to p99 1.2e-2 relative (before 6.7e-3; on one such put 0.26% and
#   0.08%, with 8 nodes 1e-4): a limit of the 6 nodes more than of the steps.
# Earlier figures of the session-16 scheme: vol^2 T > 8 with the put's rate and yield times T
# below 0.3, max 3.7e-4; every listed equity option (that product below 0.3, vol^2 T below 2)
# p99 1.5e-5. The price kernel: 0.70 of the session-15 scheme's CPU (session 16), then 2.37-2.44 ->
# 2.74-2.82 M/s for this one (131,072 random contracts alternating in one process, session 18).
# With 2 Halley steps the seed's own derivatives flow into the Greeks (no loop is cut from the
# tangents), which keeps them exact.
# Above the boundary every scheme measured keeps gamma >= 0; at and below it the price is
# intrinsic (:func:`exercised`).
FP_A_RAMP = 0.1  # the width in drift of the blend from FP-A to FP-B
ENGINE = Scheme("engine", nodes=6, fp_points=4, fp_steps=2, price_points=12, halley_steps=2, start="baw", rule="smooth",
                fp_a_drift=1.4)
# The engine's scheme for contracts outside its domain: where the put's rate or yield times T is
# at least WIDE_X (the integrands' weights e^{r u}, e^{q u} and the premium's e^{-r t} then vary by
# e^0.3 and more, which 4 and 12 points resolve less well). american.py prices those contracts
# again with this scheme, in price, Greeks and IV (session 17). On 20,000 extreme random contracts
# (1 hour to 30 years, strikes within e^{+-1} of spot, vol 0.1-500%, r and q to 50%) against the
# method at 32 nodes, 32 points, 10 steps and 128 points, relative error where the price is at
# least 1e-4 of the spot or strike, by the put's rate or yield times T:
# | x         | engine's scheme: p99 / max | this scheme: p99 / max |
# | 0 - 0.3   | 2.8e-5 / 2.6e-2 (at vol 1%; 1.6e-3 at vol 5% and more) | (not used) |
# | 0.3 - 0.7 | 7.5e-4 / 1.1e-2            | 4.0e-5 / 7.1e-5 |
# | 0.7 - 2   | 6.3e-3 / 3.3e-1            | 5.4e-5 / 1.5e-4 |
# | 2 - 4     | 2.5e-2 / 1.8e-1            | 3.0e-4 / 5.0e-4 |
# | above 4   | 3.3e-1 / 1.0               | 2.0e-3 / 8.9e-3 (the premium's e^{-r t} needs more points) |
# The engine's error steps up at 0.3 (p99 1.4e-4 below, 4.1e-4 in 0.3-0.4) and its volatility
# alone does not matter (vol^2 T above 8 with x below 0.3: max 1.7e-4). 6 Halley steps, not 2:
# with 12 nodes, some close to tau = 0, 2 steps from the seed left 1-day contracts at vol 150-450%
# 1.7e-3 off, which no number of fixed-point steps repaired (6 Halley steps: 4e-8).
# It is laid out to compile fast (the "chebyshev" layout and its plain steps in a loop, see
# american.py): 65,536 contracts here, its price 0.059 M/s against the engine's 1.17, its Greeks
# 0.010 against 0.087. No listed equity option needs it (5% times 3 years is 0.15); a 15% yield
# ETF's 2-year LEAPS does.
WIDE = Scheme("wide", nodes=12, fp_points=12, fp_steps=4, price_points=48, halley_steps=6, start="baw", rule="smooth",
              fp_loop=True)
WIDE_X = 0.3


def _safe_sqrt(h):
    """sqrt(max(h, 0)) whose derivative is 0, not NaN, at h <= 0 (the boundary at tau = 0)."""
    pos = h > 0.0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, h, 1.0)), 0.0)


def _clenshaw(coef, t):
    """Chebyshev series sum_j coef[j] T_j(t) with coef (nodes, B) and t (..., B)."""
    b1 = jnp.zeros_like(t)
    b2 = jnp.zeros_like(t)
    for j in range(len(coef) - 1, 0, -1):
        b1, b2 = 2.0 * t * b1 - b2 + coef[j], b1
    return t * b1 - b2 + coef[0]


def _to_coef(h, scheme):
    """Chebyshev coefficients (nodes, B) of the node values (the node tau = 0, where H = 0, left
    out of h (n, B)): a small fixed matrix applied as broadcast multiply-adds."""
    return sum(scheme.from_nodes[:, j + 1:j + 2] * h[j] for j in range(scheme.nodes - 1))


def _interp(weights, h):
    """sum_l weights[..., l] h[l] for constant ``weights`` (..., n) and node values h (n, B):
    broadcast multiply-adds (a dot of this shape costs more than it computes)."""
    w = np.asarray(weights)
    return sum(w[..., l, None] * h[l] for l in range(w.shape[-1]))


def _qd_plus_boundary(r, q, v, tau, xmax, halley_steps, start="xmax"):
    """ln of the QD+ exercise boundary of a unit-strike put at times ``tau`` (n, B), by Halley
    iteration on w = ln(x); the other arguments are (B,). Iterating in w costs an exp per step
    instead of a log (2.3 against 6.9 ns here) and converges in as many steps. Everything
    loop-invariant is computed once, outside the loop.

    ``start="xmax"`` (QuantLib's) starts from X; ``"baw"`` from Barone-Adesi and Whaley's seed
    S_inf + (1 - S_inf) exp((b tau - 2 v sqrt(tau)) / (1 - S_inf)), capped at X, with S_inf the
    perpetual boundary. Measured on 65,536 random contracts at 7 nodes, the median error in w
    after 3 steps is 1e-15 from the seed and 4e-5 from X. The fixed-point steps that follow
    refine the boundary, so the price needs no more: 4 steps from the seed are within 3.4e-7 of
    8 steps from X (max over 65,536 contracts), and 3 steps within 5.5e-6."""
    v2 = v * v
    dr = jnp.exp(-r * tau)
    dq = jnp.exp(-q * tau)
    vt = v * jnp.sqrt(tau)
    ivt = 1.0 / vt
    omega = 2.0 * (r - q) / v2
    one_dr = -jnp.expm1(-r * tau)
    root = jnp.sqrt((omega - 1.0) ** 2 + 8.0 * r / (v2 * one_dr))
    lam = 0.5 * (-(omega - 1.0) - root)
    lam_p = 2.0 * r / (v2 * one_dr * one_dr * root)
    alpha = 2.0 * dr * r / (v2 * (2.0 * lam + omega - 1.0))
    beta = alpha * (1.0 / one_dr + lam_p / (2.0 * lam + omega - 1.0)) - lam
    w_min = log(2.220446049250313e-12 * xmax)
    a_rdr = alpha / (r * dr)
    c0 = (r - q) * tau * ivt + 0.5 * vt  # d+ = ln(x) / vt + c0 (unit strike)
    half_v2_ivt = 0.5 * v2 * ivt
    rq_ivt = (r - q) * ivt
    i2t = 0.5 / tau
    q_over_r = dq / dr

    def step(_, w):
        x = jnp.exp(w)
        ix = 1.0 / x
        dp = w * ivt + c0
        dm = dp - vt
        pdf_p = npdf(dp)
        n_dp = ncdf_with_pdf(-dp, pdf_p)  # Phi(-d+)
        n_dm = ncdf_with_pdf(-dm, pdf_p * x * q_over_r)  # phi(d-) = phi(d+) x e^{(r-q) tau}
        dqn = dq * n_dp
        dqp = dq * pdf_p
        npv = dr * n_dm - x * dqn
        theta = r * dr * n_dm - q * x * dqn - half_v2_ivt * x * dqp
        charm = -(dqp * (rq_ivt - dm * i2t) + q * dqn)
        f = (1.0 - dqn) * x - beta * (1.0 - x - npv) + a_rdr * theta
        f1 = (1.0 + beta) * (1.0 - dqn) + dqp * ivt + a_rdr * charm
        gamma = dqp * ivt * ix
        colour = gamma * (q + rq_ivt * dp + (1.0 - dp * dm) * i2t)
        f2 = dqp * ix * ivt * (1.0 - dp * ivt) + beta * gamma + a_rdr * colour
        # in w: F' = f1 x, F'' = f2 x^2 + f1 x
        g1 = f1 * x
        inv_g1 = 1.0 / g1
        newton = f * inv_g1
        new = jnp.maximum(w_min, w - newton / (1.0 - 0.5 * newton * (f2 * x * x + g1) * inv_g1))
        return jnp.where(jnp.isfinite(new), new, w)

    # The loop runs without tangents; the last two steps carry them. Halley's map has a zero
    # derivative at its root, so after one step from a (converged) constant the first
    # derivatives are those of the root (implicit function theorem), after two the second ones:
    # the Greeks pay for two boundary iterations instead of all of them. (Where the loop has not
    # converged, what the tangents leave out is of the order of the square of its error.)
    # With 2 steps (the engine's scheme) there is no loop: the seed's derivatives are carried too,
    # which the Greeks need there (measured: rho 0.7% off finite differences with the seed cut).
    if start == "baw":
        b = r - q
        m1 = omega - 1.0
        q1 = 0.5 * (-m1 - jnp.sqrt(m1 * m1 + 8.0 * r / v2))
        s_inf = q1 / (q1 - 1.0)
        # (the exponent capped at 1: above 0 the seed is above 1 >= X, which caps it anyway, and at
        # a vol near 0 it overflowed, giving NaN tangents through the cap: NaN Greeks, session 18)
        seed = s_inf + (1.0 - s_inf) * jnp.exp(jnp.minimum((b * tau - 2.0 * vt) / (1.0 - s_inf), 1.0))
        w = log(jnp.minimum(seed, xmax))
    else:
        w = jnp.broadcast_to(log(xmax), tau.shape)
    if halley_steps > 2:
        w = jax.lax.stop_gradient(jax.lax.fori_loop(0, halley_steps - 2, step, w))  # a loop: compiles fast
    return step(1, step(0, w))


def _fp_integrands(dp_u, vt_u, w=None, a=None):
    """The fixed-point integrands at d+(tau - u) = ``dp_u`` with v sqrt(tau - u) = ``vt_u``:
    FP-B's ``(Phi(d-), Phi(d+))``, or ``((1 - w) Phi(d-) + a phi(d-), Phi(d+) + a phi(d+))``, FP-B's
    blended with FP-A's (see :func:`boundary`)."""
    dm_u = dp_u - vt_u
    pdf_p, pdf_m = npdf(dp_u), npdf(dm_u)
    n_u, d_u = ncdf_with_pdf(dm_u, pdf_m), ncdf_with_pdf(dp_u, pdf_p)
    if w is None:
        return n_u, d_u
    return n_u + (a * pdf_m - w * n_u), d_u + a * pdf_p


def boundary(T, r, q, v, scheme=ENGINE, layout: str = "loop"):
    """Early-exercise boundary of a unit-strike put (valid inputs with r > 0), arrays (B,):
    ``(H, X)`` with H (n, B) = ln(B/X)^2 at the Chebyshev nodes in sqrt(tau) other than tau = 0
    (where H = 0) and X = min(1, r/q). The boundary of strike K is K times this one, so it does not
    depend on the spot or strike (the spot Greeks never differentiate it).

    Every intermediate is laid out with the contracts on the last axis, (..., B): XLA:CPU
    vectorizes the innermost axis, and with the nodes or quadrature points there (7 wide) it
    would run mostly scalar code (measured 2 to 3 times slower). ``layout`` is how the
    fixed-point quadrature is written for XLA:CPU; both compute the same sums (equal to ~1e-15):

    * ``"loop"`` (price and IV): a Python loop over the points, each an (n, B) array, with the
      boundary at a point interpolated by constant weights. XLA runs the normal CDF about twice
      as fast this way; the price kernel is about 1.4 times faster than with "chebyshev".
    * ``"chebyshev"`` (Greeks): one (fp_points, n, B) array summed over its first axis, the
      boundary at the points by Clenshaw's recurrence. Under the Greeks' nested forward-mode
      derivatives the loop layout fuses into kernels 6-9 times slower (measured), this
      one does not."""
    if layout not in ("loop", "chebyshev"):
        raise ValueError(f"unknown quadrature layout {layout!r}; expected 'loop' or 'chebyshev'")
    above = q > r  # X = min(1, r/q), written so that no derivative divides by a zero q
    xmax = jnp.where(above, r / jnp.where(above, q, 1.0), 1.0)
    tau = scheme.node_frac[:, None] * T  # (n, B); the node tau = 0 is dropped
    lb = _qd_plus_boundary(r, q, v, tau, xmax, scheme.halley_steps, scheme.start) - log(xmax)
    h = lb * lb  # H = ln(B/X)^2 at the nodes

    # fixed-point integrals over u in (0, tau) at u = tau s_j: everything but B(u) is fixed. With
    # vt = v sqrt(tau), v sqrt(tau - u) = vt c2_j, and the drift of d+(tau - u) is c2_j g.
    alpha = jnp.exp(-(r - q) * tau)
    vt = v * jnp.sqrt(tau)
    ivt = 1.0 / vt
    g = (r - q) * tau * ivt + 0.5 * vt
    c_tau = g + log(xmax) * ivt  # d+(tau, B/K) = c_tau - (-ln(B/X)) ivt
    half_tau = 0.5 * tau
    if layout == "loop":
        r_w = [r * (float(w) * half_tau) * jnp.exp(float(s) * r * tau) for s, w in zip(scheme.fp_s, scheme.fp_w)]
        q_w = [q * (float(w) * half_tau) * jnp.exp(float(s) * q * tau) for s, w in zip(scheme.fp_s, scheme.fp_w)]
    else:
        s_j, w_j = scheme.fp_s[:, None, None], scheme.fp_w[:, None, None]
        r_w = r * (w_j * half_tau) * jnp.exp(s_j * r * tau)  # (fp_points, n, B)
        q_w = q * (w_j * half_tau) * jnp.exp(s_j * q * tau)
        # 2 sqrt(u/T) - 1, as a full (fp_points, n, B) array like the Greeks kernel was measured with
        cheb_u = (1.0 + scheme.z[None, 1:, None]) * scheme.fp_sqrt_s[:, None, None] - 1.0 + 0.0 * tau
    # the weight of FP-A in the plain steps (0: FP-B), from the drift (r - q) sqrt(T) / sigma
    if scheme.fp_a_drift is None:
        w_a = None
    else:
        drift = (r - q) * jnp.sqrt(T) / v
        t = jnp.clip((scheme.fp_a_drift - drift) * (1.0 / FP_A_RAMP), 0.0, 1.0)
        w_a = t * t * (3.0 - 2.0 * t)  # smoothstep: no kink in the price's vol derivatives at either end
        # the blend (1 - w_a) FP-B + w_a v sqrt(tau) FP-A (see fp_step) divided through by
        # 1 - w_a + w_a v sqrt(tau), so that FP-B's Phi(d+) keeps the factor 1: its Phi(d-) then has
        # 1 - w_n, FP-A's phi terms a_n / (v sqrt(tau - u)) * v sqrt(tau) = a_n c1_j
        a_n = w_a / (1.0 - w_a + w_a * vt)
        w_n = a_n * vt

    def fp_step(h, jacobi_newton: bool):
        # FP-B: N = Phi(d-) + r Int e^{ru} Phi(d-(tau - u)) du, D = Phi(d+) + q Int e^{qu} Phi(d+(tau - u)) du;
        # FP-A (a plain step where w_a > 0): N = phi(d-) / (v sqrt(tau)) + r Int e^{ru} phi(d-(tau - u)) /
        # (v sqrt(tau - u)) du, D = phi(d+) / (v sqrt(tau)) + Phi(d+) + q Int e^{qu} [Phi(d+(tau - u)) +
        # phi(d+(tau - u)) / (v sqrt(tau - u))] du. The step takes (1 - w_a) N_B + w_a v sqrt(tau) N_A over
        # the same blend of D: both of FP-A's are multiplied by v sqrt(tau), which puts them on FP-B's
        # scale (phi against Phi), so that the blend moves from one to the other evenly across the
        # ramp (unscaled, FP-A's 1 / (v sqrt(tau)) outweighs FP-B at the nodes near tau = 0 already
        # at w_a = 0.01: a kink in the price against the vol)
        mix = w_a is not None and not jacobi_newton
        minus_lb = _safe_sqrt(h)  # -ln(B(tau)/X)
        # ln(B(tau)/B(u)) = sqrt(H(u)) - sqrt(H(tau)): no exp or log per quadrature point
        if layout == "loop":
            ni = di = 0.0
            for j in range(scheme.fp_points):
                c1, c2 = float(scheme.fp_c1[j]), float(scheme.fp_sqrt_1ms[j])
                dp_u = (_safe_sqrt(_interp(scheme.fp_interp[j], h)) - minus_lb) * (c1 * ivt) + c2 * g
                n_u, d_u = _fp_integrands(dp_u, c2 * vt, *((w_n, c1 * a_n) if mix else ()))
                ni = ni + r_w[j] * n_u
                di = di + q_w[j] * d_u
        else:
            c1, c2 = scheme.fp_c1[:, None, None], scheme.fp_sqrt_1ms[:, None, None]
            dp_u = (_safe_sqrt(_clenshaw(_to_coef(h, scheme), cheb_u)) - minus_lb) * (c1 * ivt) + c2 * g
            n_u, d_u = _fp_integrands(dp_u, c2 * vt, *((w_n, c1 * a_n) if mix else ()))
            ni = jnp.sum(r_w * n_u, axis=0)
            di = jnp.sum(q_w * d_u, axis=0)
        d_p = c_tau - minus_lb * ivt
        d_m = d_p - vt
        b = xmax * jnp.exp(-minus_lb)
        pdf_p = npdf(d_p)
        pdf_m = pdf_p * b / alpha  # phi(d-) = phi(d+) (B/K) e^{(r-q) tau}: no second exp
        n_tau, d_tau = ncdf_with_pdf(d_m, pdf_m), ncdf_with_pdf(d_p, pdf_p)
        if mix:
            n_tau, d_tau = n_tau + (a_n * pdf_m - w_n * n_tau), d_tau + a_n * pdf_p
        N = n_tau + ni
        D = d_tau + di
        if layout == "chebyshev":
            # N and D divided by D held constant (an identity, derivatives included): at a vol near
            # 0 they are tail probabilities down to 1e-150, and the second derivative of N / D
            # takes D^-3, which overflowed (NaN volga). Only in the Greeks kernel's layout: the
            # price and IV kernels take no derivatives
            unit = jax.lax.stop_gradient(jnp.where(D > 0.0, 1.0 / D, 1.0))
            N, D = N * unit, D * unit
            pdf_m, pdf_p = pdf_m * unit, pdf_p * unit
        fv = alpha * N / D
        if jacobi_newton:
            scale = ivt / b
            fd = alpha * scale * (pdf_m / D - pdf_p * N / (D * D))
            new_b = b - (fv - b) / (fd - 1.0)
        else:
            new_b = fv
        new_b = jnp.where(jnp.isfinite(new_b) & (new_b > 0), new_b, b)
        lb = jnp.log(new_b / xmax)  # XLA:CPU runs this step slower with the bitwise log (measured: 2.3 -> 1.4 M/s)
        return lb * lb

    h = fp_step(h, True)  # a Jacobi-Newton step, then plain ones
    if scheme.fp_loop:  # one traced step: a smaller program, compiled in a fraction of the time
        h = jax.lax.fori_loop(1, scheme.fp_steps, lambda _, h: fp_step(h, False), h)
    else:
        for _ in range(1, scheme.fp_steps):
            h = fp_step(h, False)

    return h, xmax


def put_on_boundary(m, T, r, q, v, h, xmax, scheme=ENGINE, layout: str = "loop"):
    """Unit-strike American put at spot ``m`` (= S/K) given its :func:`boundary` ``(h, xmax)``:
    the European price plus the early-exercise premium of :func:`put_parts` (the price only where
    the put is not :func:`exercised`; callers take 1 - m there)."""
    european, premium = put_parts(m, T, r, q, v, h, xmax, scheme, layout)
    return jnp.maximum(european, 0.0) + premium


def put_parts(m, T, r, q, v, h, xmax, scheme=ENGINE, layout: str = "loop", european_rates=None):
    """``(European price, early-exercise premium)`` of the unit-strike put at spot ``m``, the
    European one at ``european_rates`` (rate, yield) where given (the contract's own, where r and
    q are stand-ins), the premium an integral over t in (0, T) in
    z = sqrt(t) = sqrt(T) s_j with the boundary at T - t, as one (price_points, B) array (a Python
    loop of (B,) arrays fuses into one long loop body that XLA:CPU runs 3 times slower). The
    boundary at the points: constant weights (``layout="loop"``) or Clenshaw (``"chebyshev"``,
    the Greeks), as in :func:`boundary`."""
    sqrt_T = jnp.sqrt(T)
    z = scheme.pr_s[:, None] * sqrt_T  # (price_points, B)
    t = z * z
    vt = v * z
    if layout == "loop":
        h_t = _interp(scheme.pr_interp, h)
    else:
        h_t = _clenshaw(_to_coef(h, scheme), scheme.pr_cheb[:, None] + 0.0 * z)
    ln_s_b = log(m / xmax) + _safe_sqrt(h_t)  # ln(m / B(T - t))
    dp = (ln_s_b + (r - q) * t) / vt + 0.5 * vt
    integrand = 2.0 * z * (r * jnp.exp(-r * t) * ncdf(vt - dp) - q * m * jnp.exp(-q * t) * ncdf(-dp))
    premium = 0.5 * sqrt_T * jnp.sum(scheme.pr_w[:, None] * integrand, axis=0)

    r_e, q_e = (r, q) if european_rates is None else european_rates
    st = v * sqrt_T
    d1 = (log(m) + (r_e - q_e) * T) / st + 0.5 * st
    european = jnp.exp(-r_e * T) * ncdf(st - d1) - m * jnp.exp(-q_e * T) * ncdf(-d1)
    return european, jnp.maximum(premium, 0.0)


def exercised(m, h, xmax):
    """Whether a unit-strike put at spot ``m`` is at or below its boundary B(T) (the last node,
    tau = T), where it is exercised: worth 1 - m, with delta -1 and gamma, theta, vega and rho 0.
    The integral formula is no price there: measured on 2,000 random contracts, it exceeds 1 - m
    by up to 4e-5 (the scheme's error in value matching), with gamma down to -20% of the
    option's largest and delta below -1. Above B(T) it is convex (gamma >= 0, same measurement)."""
    return m <= xmax * jnp.exp(-_safe_sqrt(h[-1]))


def american_put(S, K, T, r, q, v, scheme=ENGINE):
    """American put price (valid inputs with r > 0); arrays of shape (B,)."""
    y, xmax = boundary(T, r, q, v, scheme)
    m = S / K
    return K * jnp.where(exercised(m, y, xmax), 1.0 - m, put_on_boundary(m, T, r, q, v, y, xmax, scheme))


__all__ = ["american_put", "boundary", "put_on_boundary", "Scheme", "ENGINE", "QUANTLIB_FAST", "WIDE", "WIDE_X"]
