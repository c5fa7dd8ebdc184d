#!/usr/bin/python3
"""PyTorch peer for bench/bench_scratch.sh: the lesson's from-scratch CNN,
one Adam training step per batch of 32 150x150x3 images, same as
bench/scratch_cnn.c. Prints images/s and peak RSS; tries NCHW and
channels_last and reports both."""
import resource
import sys
import time

import torch
import torch.nn as nn

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
torch.manual_seed(0)


def model():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(36 * 36 * 64, 128), nn.ReLU(),
        nn.Linear(128, 1), nn.Sigmoid())


def run(channels_last):
    m = model()
    x = torch.rand(32, 3, 150, 150)
    y = (torch.arange(32) % 2).float().unsqueeze(1)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.BCELoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * 32 / (time.perf_counter() - t0)


best = 0.0
for cl in (False, True):
    ips = run(cl)
    print("torch %s images_per_s %.2f" % ("channels_last" if cl else "nchw", ips))
    best = max(best, ips)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print("torch best images_per_s %.2f peak_rss_mib %.0f" % (best, peak))
