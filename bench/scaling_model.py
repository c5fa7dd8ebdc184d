#!/usr/bin/env python3
"""The scaling model of docs/SCALING.md: time per data-parallel step against
the number of machines, for a ring allreduce overlapped with backward.

    t_c(N)  compute of a step: t1 / N with the global batch fixed (graft's
            --batch), t1 with the batch per machine fixed (Horovod's runs)
    t_ar(N) = 2(N-1)/N * G / BW + 2(N-1) * k * alpha
            G gradient bytes, BW link bandwidth, k buckets of 2 MiB, alpha
            the latency of one message
    exposed = max(t_ar / k, t_ar - f * t_c(N))
            the buckets leave as backward (a fraction f of the compute)
            finishes them; the last bucket always waits, and whatever
            outlasts backward
    T(N)    = t_c(N) + exposed;  efficiency = t1 / (N T(N)) or t1 / T(N)

    bench/scaling_model.py NAME STEP_SECONDS GRAD_BYTES [--fixed-global]
"""
import argparse
import math

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("step", type=float, help="seconds of one step of the whole batch on one machine")
p.add_argument("grad", type=float, help="bytes of trainable gradient")
p.add_argument("--fixed-global", action="store_true", help="the global batch stays (strong scaling)")
p.add_argument("--backward", type=float, default=2 / 3, help="share of the step that is backward")
p.add_argument("--alpha", type=float, default=30e-6, help="seconds per message (TCP)")
p.add_argument("--bucket", type=float, default=2 * 2**20)
p.add_argument("--max-n", type=int, default=64)
a = p.parse_args()

k = max(1, math.ceil(a.grad / a.bucket))


def step(n, bw):
    tc = a.step / n if a.fixed_global else a.step
    if n == 1:
        return tc
    tar = 2 * (n - 1) / n * a.grad / bw + 2 * (n - 1) * k * a.alpha
    return tc + max(tar / k, tar - a.backward * tc)


def eff(n, bw):
    return a.step / (n * step(n, bw)) if a.fixed_global else a.step / step(n, bw)


links = [10, 25, 100]
ns = [n for n in (1, 2, 3, 4, 8, 16, 32, 64) if n <= a.max_n]
print("%s: step %.1f ms on one machine, %.1f MB of gradient in %d buckets, %s"
      % (a.name, a.step * 1e3, a.grad / 1e6, k,
         "global batch fixed" if a.fixed_global else "batch per machine fixed"))
print("| machines | " + " | ".join("%d Gbit/s: ms/step (eff.)" % g for g in links) + " |")
print("|---:|" + "---:|" * len(links))
for n in ns:
    cells = []
    for g in links:
        bw = g * 1e9 / 8
        cells.append("%.1f (%.0f%%)" % (step(n, bw) * 1e3, 100 * eff(n, bw)))
    print("| %d | %s |" % (n, " | ".join(cells)))
best = []
for g in links:
    bw = g * 1e9 / 8
    ok = [n for n in range(1, a.max_n + 1) if eff(n, bw) >= 0.8]
    best.append("%d Gbit/s: %s" % (g, max(ok) if ok else "none"))
print("largest N at >= 80%% efficiency (N <= %d): %s" % (a.max_n, ", ".join(best)))
