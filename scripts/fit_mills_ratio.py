"""Fit the rational Mills ratio behind the engine's normal CDF (optrader_pipelines/pricing/european.py).

R(y) = N(-y) / phi(y) for y in [0, 40] is approximated as t P(u) / Q(u), with t = 1 / (1 + C y),
u = 2 (t - t0) / (1 - t0) - 1 (so u is in [-1, 1]) and P, Q of degree M. The fit minimises the
largest relative error: linearised least squares (Sanathanan-Koerner: each pass divides by the last
Q) with Lawson reweighting towards minimax, in 50-digit arithmetic on Chebyshev points, the
polynomials kept in the Chebyshev basis until the end. It prints the coefficients (monomials in u,
as the engine evaluates them) and the error in exact and in float64 evaluation.

Needs mpmath, which is not a project dependency:

    .tools/bin/uv run --with mpmath python scripts/fit_mills_ratio.py
"""

from __future__ import annotations

import argparse

import mpmath as mp
import numpy as np

Y_MAX = 40  # N(-y) underflows float64 beyond 38.5


def mills(y):
    return mp.sqrt(mp.pi / 2) * mp.exp(y * y / 2) * mp.erfc(y / mp.sqrt(2))


def chebyshev_rows(u, degree):
    rows = [mp.mpf(1), u]
    for _ in range(2, degree + 1):
        rows.append(2 * u * rows[-1] - rows[-2])
    return rows[:degree + 1]


def to_monomial(coef):
    """Chebyshev coefficients to monomial ones, exactly (in mpmath)."""
    n = len(coef)
    basis = [[mp.mpf(1)], [mp.mpf(0), mp.mpf(1)]]
    for _ in range(2, n):
        a = [mp.mpf(0)] + [2 * x for x in basis[-1]]
        b = basis[-2] + [mp.mpf(0)] * (len(a) - len(basis[-2]))
        basis.append([x - y for x, y in zip(a, b)])
    out = [mp.mpf(0)] * n
    for k in range(n):
        for i, x in enumerate(basis[k]):
            out[i] += coef[k] * x
    return out


def fit(degree: int, c: float, points: int, passes: int):
    c = mp.mpf(c)
    t0 = 1 / (1 + c * Y_MAX)
    us = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / points) for k in range(points)]
    ts = [t0 + (1 - t0) * (u + 1) / 2 for u in us]
    target = [mills((1 - t) / (c * t)) / t for t in ts]
    rows = [chebyshev_rows(u, degree) for u in us]
    q_last = [mp.mpf(1)] * points
    weight = [mp.mpf(1)] * points
    best = None
    for it in range(passes):
        a, rhs = [], []
        for i in range(points):
            s = weight[i] / (target[i] * q_last[i])
            a.append([x * s for x in rows[i]] + [-target[i] * x * s for x in rows[i][1:]])
            rhs.append(target[i] * s)
        sol = mp.qr_solve(mp.matrix(a), mp.matrix(rhs))[0]
        p = [sol[k] for k in range(degree + 1)]
        q = [mp.mpf(1)] + [sol[degree + 1 + k] for k in range(degree)]
        err, q_last = [], []
        for i in range(points):
            pv = mp.fsum(x * y for x, y in zip(p, rows[i]))
            qv = mp.fsum(x * y for x, y in zip(q, rows[i]))
            err.append((pv / qv - target[i]) / target[i])
            q_last.append(qv)
        worst = max(abs(e) for e in err)
        if best is None or worst < best[0]:
            best = (worst, p, q)
        if it >= 3:  # Lawson: weight each point by its error, towards equal ripples
            weight = [w * abs(e) ** 0.5 for w, e in zip(weight, err)]
            top = max(weight)
            weight = [w / top for w in weight]
    return best[0], [float(x) for x in to_monomial(best[1])], [float(x) for x in to_monomial(best[2])]


def float64_error(P, Q, c):
    t0 = 1.0 / (1.0 + c * Y_MAX)
    alpha, beta = 2.0 / (1.0 - t0), -1.0 - 2.0 * t0 / (1.0 - t0)
    y = np.concatenate([np.linspace(0, Y_MAX, 4001), np.random.default_rng(1).uniform(0, 3, 2000)])
    t = 1.0 / (1.0 + c * y)
    u = alpha * t + beta
    p, q = np.full_like(u, P[-1]), np.full_like(u, Q[-1])
    for a in P[-2::-1]:
        p = p * u + a
    for a in Q[-2::-1]:
        q = q * u + a
    ref = np.array([float(mills(mp.mpf(float(v)))) for v in y])
    return float(np.max(np.abs(t * p / q / ref - 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=9)
    parser.add_argument("--c", type=float, default=0.3)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--passes", type=int, default=25)
    args = parser.parse_args()
    mp.mp.dps = 50
    exact, P, Q = fit(args.degree, args.c, args.points, args.passes)
    print(f"degree {args.degree}/{args.degree}, C = {args.c}: max relative error {float(exact):.2e} exact, "
          f"{float64_error(P, Q, args.c):.2e} in float64")
    print(f"_MILLS_C = {args.c!r}")
    for name, coef in (("_MILLS_P", P), ("_MILLS_Q", Q)):
        print(f"{name} = (\n    " + ",\n    ".join(", ".join(repr(x) for x in coef[i:i + 3])
                                                 for i in range(0, len(coef), 3)) + ")")


if __name__ == "__main__":
    main()
