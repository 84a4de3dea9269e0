"""Derive the coefficients of the rational erf in csrc/include/hrvit/common.h (the CPU kernels' GELU).

erf(u) ~= u P(u^2) / Q(u^2) on [0, 4] (Q(0) = 1; beyond 4 erf is 1 to 2e-8, so u is clamped there),
P of degree 6 and Q of degree 4: fitted near-minimax in absolute error by Lawson's iteratively
reweighted least squares on the linearized residual u P - erf(u) Q. The GELU needs
Phi(x) = 1/2 + erf(x / sqrt 2) / 2, so the printed coefficients are those of
Phi(x) = 1/2 + x P'(x^2) / Q'(x^2) with the 1/sqrt 2 and the 1/2 folded in.

    python python/fit_gelu_erf.py      (needs numpy and scipy)
"""
import math

import numpy as np
from scipy.special import erf

U_MAX, P_TERMS, Q_TERMS = 4.0, 7, 5


def fit():
    u = np.linspace(0.0, U_MAX, 20001)[1:]
    f, s = erf(u), u * u
    a = np.concatenate([np.stack([u * s**i for i in range(P_TERMS)], 1),
                        np.stack([-f * s**i for i in range(1, Q_TERMS)], 1)], 1)
    q_weight, lawson = np.ones_like(u), np.ones_like(u)
    for _ in range(200):
        w = q_weight * np.sqrt(lawson)
        sol = np.linalg.lstsq(a * w[:, None], f * w, rcond=None)[0]
        p, q = sol[:P_TERMS], np.concatenate([[1.0], sol[P_TERMS:]])
        q_at = np.polyval(q[::-1], s)
        err = u * np.polyval(p[::-1], s) / q_at - f
        q_weight = 1.0 / np.abs(q_at)
        lawson = lawson * np.abs(err)
        lawson /= lawson.sum()
    return p, q, np.abs(err).max()


def gelu_float32(x, p, q):
    """The kernel's evaluation order in float32."""
    x = x.astype(np.float32)
    xc = np.clip(x, -U_MAX * math.sqrt(2), U_MAX * math.sqrt(2)).astype(np.float32)
    s = xc * xc
    num, den = np.full_like(s, p[-1]), np.full_like(s, q[-1])
    for c in p[-2::-1]:
        num = num * s + c
    for c in q[-2::-1]:
        den = den * s + c
    return x * (np.float32(0.5) + xc * num / den)


def main():
    p, q, err = fit()
    p_folded = np.float32([0.5 / math.sqrt(2) * c / 2**i for i, c in enumerate(p)])
    q_folded = np.float32([c / 2**i for i, c in enumerate(q)])
    x = np.linspace(-10, 10, 2_000_001)
    exact = x * 0.5 * (1 + erf(x / math.sqrt(2)))
    gelu_err = np.abs(gelu_float32(x, p_folded, q_folded) - exact) / np.maximum(1.0, np.abs(x))
    print(f"erf fit: max abs error {err:.2e} (float64); "
          f"GELU in float32: max error {gelu_err.max():.2e} per unit of x")
    print("P' (powers 0..6 of x^2):", ", ".join(f"{c:.9e}f" for c in p_folded))
    print("Q' (powers 0..4 of x^2):", ", ".join(f"{c:.9e}f" for c in q_folded))


if __name__ == "__main__":
    main()
