"""Fit ``exp(r) ~ q0 + q1 r + ... + qd r^d`` on ``|r| <= ln(2) / 2`` for relative error (the
coefficients of ``targets/fastmath._Q``, degree 5), and print its error in float64 and when
evaluated in float32 Horner steps as the kernels do::

    python scripts/fit_exp_polynomial.py --degree 5

Lawson's iteratively reweighted least squares on Chebyshev nodes converges to the minimax
(equioscillating) fit without a Remez exchange.
"""

from __future__ import annotations

import argparse

import numpy as np


def fit(degree: int, nodes: int = 4001, iterations: int = 300) -> np.ndarray:
    """Float64 coefficients, lowest order first."""
    half = np.log(2.0) / 2.0
    r = np.cos(np.linspace(0.0, np.pi, nodes)) * half
    v = np.vander(r, degree + 1, increasing=True) / np.exp(r)[:, None]  # relative residuals
    w = np.ones_like(r)
    for _ in range(iterations):
        sw = np.sqrt(w)
        c = np.linalg.lstsq(v * sw[:, None], sw, rcond=None)[0]
        w = w * np.abs(v @ c - 1.0)
        w /= w.sum()
    return c


def float32_error(c32: np.ndarray, samples: int = 200001) -> float:
    """Largest relative error of the float32 Horner evaluation over the interval."""
    half = np.log(2.0) / 2.0
    r = np.linspace(-half, half, samples).astype(np.float32)
    p = np.full_like(r, c32[-1])
    for c in c32[-2::-1]:
        p = (p * r + c).astype(np.float32)
    return float(np.max(np.abs(p.astype(np.float64) / np.exp(r.astype(np.float64)) - 1.0)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--degree", type=int, default=5)
    args = ap.parse_args(argv)
    if not 2 <= args.degree <= 8:
        raise SystemExit(f"--degree {args.degree}: choose 2 to 8")
    c = fit(args.degree)
    half = np.log(2.0) / 2.0
    r = np.linspace(-half, half, 200001)
    err64 = np.max(np.abs(np.polyval(c[::-1], r) / np.exp(r) - 1.0))
    c32 = c.astype(np.float32)
    print(f"degree {args.degree}: relative error {err64:.3g} (float64), "
          f"{float32_error(c32):.3g} (float32 coefficients and Horner steps)")
    print("coefficients, lowest order first:", ", ".join(repr(float(v)) for v in c32))


if __name__ == "__main__":
    main()
