#!/usr/bin/env python3
"""The polynomial behind gelu_cdf2 in src/core/activation.c.

erfc(a) = t * exp(P(t) - a^2) with t = 1 / (1 + a/2): P is fitted to
log(erfc(a) / t) + a^2 = log(erfcx(a) / t) on t in [1/6, 1] (a in [0, 10];
beyond, erfc is below float's range), degree 9 in u = t - 0.6, by weighted
least squares on Chebyshev nodes reweighted towards minimax. Prints the
coefficients (highest first, as the Horner scheme uses them), the fit's
error, and gelu's error in float32 arithmetic against double.
Run: /usr/bin/python3 scripts/fit_gelu_erfc.py (numpy, torch)
"""
import numpy as np
import torch

LO, HI, MID, DEG = 1 / 6, 1.0, 0.6, 9


def erfcx(a):
    return torch.special.erfcx(torch.tensor(a, dtype=torch.float64)).numpy()


def main():
    n = 6000
    k = np.arange(n)
    t = (LO + HI) / 2 + (HI - LO) / 2 * np.cos(np.pi * (k + 0.5) / n)
    a = 2 * (1 / t - 1)
    f = np.log(erfcx(a) / t)
    w = np.ones_like(f)
    for _ in range(40):
        c = np.polynomial.polynomial.polyfit(t - MID, f, DEG, w=w)
        err = np.polynomial.polynomial.polyval(t - MID, c) - f
        w = w * (1 + 5 * np.abs(err) / np.abs(err).max())
    c32 = [np.float32(v) for v in c]
    print("fit error %.3g" % np.abs(err).max())
    print("coefficients, highest degree first:")
    for v in reversed(c32):
        print("    %.17g" % float(v))

    f32 = np.float32
    x = np.linspace(-14, 14, 2000001).astype(f32)
    z = (x * f32(0.70710678118654752)).astype(f32)
    az = np.abs(z)
    tt = (f32(1) / (f32(1) + f32(0.5) * az)).astype(f32)
    u = (tt - f32(MID)).astype(f32)
    p = c32[-1]
    for ci in c32[-2::-1]:
        p = (p * u + ci).astype(f32)
    e = (tt * np.exp((p - az * az).astype(f32).astype(np.float64)).astype(f32)).astype(f32)
    g = (f32(0.5) * x * np.where(z >= 0, f32(2) - e, e).astype(f32)).astype(f32)
    xd = x.astype(np.float64)
    ref = 0.5 * xd * torch.special.erfc(torch.tensor(-xd / np.sqrt(2))).numpy()
    m = np.abs(ref) > 1e-30
    rel = np.abs(g[m] - ref[m]) / np.abs(ref[m])
    print("gelu: max relative error %.3g; divided by 1 + x^2 (the rounding of x / sqrt 2 "
          "and a^2) %.3g" % (rel.max(), (rel / (1 + xd[m] ** 2)).max()))


if __name__ == "__main__":
    main()
