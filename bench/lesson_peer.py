#!/usr/bin/python3
"""PyTorch peer for bench/bench_lesson.sh: the whole lesson
(shared/lesson/lesson27_transfer_learning.md) as a PyTorch user would write
it, with the sizes, epochs and steps of `graft lesson`:

  1. MobileNet v1 alpha 0.75 without top, frozen (requires_grad False, BN in
     eval mode) + GAP + Dense(1024, relu) + Dense(1, sigmoid), Adam(1e-3),
     5 epochs;
  2. the last 20 Keras layers unfrozen, Adam(1e-5), 10 epochs;
  3. the lesson's CNN from scratch, Adam(1e-3), 10 epochs.

An epoch is 100 steps of 32 drawn from an endless shuffled stream over
train/ (as Keras's DirectoryIterator, which does not restart at an epoch's
end) and 50 validation steps of 32 from an endless stream over validation/.
Data: torchvision ImageFolder + DataLoader with 2 workers, PIL nearest
resizing (Keras's load_img default) to --size, then MobileNet's
preprocess_input (x/127.5 - 1) for the transfer stages (--preprocess model,
graft's default) or x/255 (rescale), and always x/255 for the CNN, as graft
does.

The base has random weights: the figures are for timing only, its accuracies
mean nothing (transplanting the ImageNet weights would not change the work
done per step). No feature caching: Keras recomputes the frozen base every
step, and so does this peer.

usage:
  lesson_peer.py run [--data DIR] [--size N] [--steps N] [--val-steps N]
                     [--threads N] [--workers N] [--layouts L,L,L] [--preprocess P]
      prints one line per epoch and, last, a JSON line with the seconds of
      each stage (fit only: training and validation steps, as graft's) and
      the best validation accuracy of each stage.
  lesson_peer.py calibrate [--size N] [--threads N] [--calib-steps N]
      times training steps of each stage on a synthetic batch in NCHW and
      channels_last, prints a JSON line {stage: {layout: s_per_step}}.
"""
import argparse
import itertools
import json
import os
import sys
import time

import torch
import torch.nn as nn
from torchvision import datasets, transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from features_peer import mobilenet_v1  # noqa: E402

STAGES = ("frozen", "finetune", "scratch")
BATCH = 32


def base_model(alpha=0.75):
    """features_peer's MobileNet v1 lists its modules in the order and
    granularity of Keras's layers: ZeroPad2d = conv_pad_N, Conv2d = conv1 /
    conv_dw_N / conv_pw_N, BatchNorm2d = *_bn, ReLU6 = *_relu; only Keras's
    InputLayer has no module. So base[-20:] is Keras's base_model.layers[-20:]:
    conv_pw_10_relu (no weights), then blocks 11 (6 layers), 12 (7, with
    conv_pad_12) and 13 (6), i.e. the weights of conv_dw_11 .. conv_pw_13_bn:
    the last three depthwise-separable blocks, not two."""
    return mobilenet_v1(alpha)


class Transfer(nn.Module):
    def __init__(self, alpha=0.75):
        super().__init__()
        self.base = base_model(alpha)
        channels = int(1024 * alpha)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1024), nn.ReLU(),
                                  nn.Linear(1024, 1), nn.Sigmoid())
        self.unfrozen = 0

    def set_unfrozen(self, n):
        """Trainable: the head and the last n base layers, as Keras's
        base_model.trainable = False then layer.trainable = True for
        base_model.layers[-n:]."""
        self.unfrozen = n
        for i, m in enumerate(self.base):
            for p in m.parameters():
                p.requires_grad_(i >= len(self.base) - n)
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode=True):
        # A frozen Keras BatchNormalization runs in inference mode even in
        # fit(); an unfrozen one uses batch statistics and updates its moving
        # ones.
        super().train(mode)
        for i, m in enumerate(self.base):
            if i < len(self.base) - self.unfrozen:
                m.eval()
        return self

    def forward(self, x):
        return self.head(self.base(x))


def scratch_model(size):
    side = ((size - 2) // 2 - 2) // 2
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(side * side * 64, 128), nn.ReLU(),
        nn.Linear(128, 1), nn.Sigmoid())


def stage_model(stage, size):
    if stage == "scratch":
        return scratch_model(size), None
    m = Transfer()
    params = m.set_unfrozen(20 if stage == "finetune" else 0)
    return m, params


def adam(params, lr):
    return torch.optim.Adam(params, lr=lr, eps=1e-7)  # Keras's epsilon


def stream(loader):
    """Endless batches; each pass reshuffles (shuffle=True), workers persist."""
    while True:
        for b in loader:
            yield b


def loaders(root, size, preprocess, workers):
    t = [transforms.Resize((size, size), interpolation=transforms.InterpolationMode.NEAREST),
         transforms.ToTensor()]
    if preprocess == "model":
        t.append(transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))  # x/127.5 - 1
    tf = transforms.Compose(t)
    out = []
    for sub, shuffle in (("train", True), ("validation", False)):
        ds = datasets.ImageFolder(os.path.join(root, sub), transform=tf)
        out.append(stream(torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=shuffle, num_workers=workers,
                                                      persistent_workers=workers > 0)))
    return out


def fit(model, opt, train, val, epochs, steps, val_steps, channels_last, label):
    loss_fn = nn.BCELoss()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    best = 0.0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        te = time.perf_counter()
        model.train()
        tl = tc = tn = 0.0
        for x, y in itertools.islice(train, steps):
            x = x.contiguous(memory_format=fmt)
            y = y.float().unsqueeze(1)
            opt.zero_grad(set_to_none=True)
            p = model(x)
            loss = loss_fn(p, y)
            loss.backward()
            opt.step()
            tl += loss.item() * len(y)
            tc += ((p > 0.5).float() == y).sum().item()
            tn += len(y)
        model.eval()
        vl = vc = vn = 0.0
        with torch.inference_mode():
            for x, y in itertools.islice(val, val_steps):
                x = x.contiguous(memory_format=fmt)
                y = y.float().unsqueeze(1)
                p = model(x)
                vl += loss_fn(p, y).item() * len(y)
                vc += ((p > 0.5).float() == y).sum().item()
                vn += len(y)
        best = max(best, vc / vn)
        print("%s epoch %d/%d - %.1fs - loss: %.4f - accuracy: %.4f - val_loss: %.4f - val_accuracy: %.4f" %
              (label, epoch + 1, epochs, time.perf_counter() - te, tl / tn, tc / tn, vl / vn, vc / vn), flush=True)
    return time.perf_counter() - t0, best


def run(a):
    layouts = a.layouts.split(",")
    if len(layouts) != 3 or any(l not in ("nchw", "channels_last") for l in layouts):
        raise SystemExit("--layouts: three of nchw / channels_last, one per stage")
    cl = [l == "channels_last" for l in layouts]
    t_start = time.perf_counter()
    seconds, best = [], []

    train, val = loaders(a.data, a.size, a.preprocess, a.workers)
    m = Transfer()
    if cl[0]:
        m = m.to(memory_format=torch.channels_last)
    s, b = fit(m, adam(m.set_unfrozen(0), 1e-3), train, val, 5, a.steps, a.val_steps, cl[0], "frozen")
    seconds.append(s)
    best.append(b)

    m = m.to(memory_format=torch.channels_last if cl[1] else torch.contiguous_format)
    s, b = fit(m, adam(m.set_unfrozen(20), 1e-5), train, val, 10, a.steps, a.val_steps, cl[1], "fine-tune")
    seconds.append(s)
    best.append(b)
    del m, train, val

    train, val = loaders(a.data, a.size, "rescale", a.workers)
    m = scratch_model(a.size)
    if cl[2]:
        m = m.to(memory_format=torch.channels_last)
    s, b = fit(m, adam(m.parameters(), 1e-3), train, val, 10, a.steps, a.val_steps, cl[2], "scratch")
    seconds.append(s)
    best.append(b)
    print(json.dumps({"seconds": [round(x, 2) for x in seconds], "total_fit": round(sum(seconds), 2),
                      "wall": round(time.perf_counter() - t_start, 2), "val_accuracy": best,
                      "steps": a.steps, "val_steps": a.val_steps, "layouts": layouts,
                      "threads": torch.get_num_threads()}))


def calibrate(a):
    """Seconds per training step (forward, backward, Adam) of each stage's
    model on a fixed batch, so the bench can pick each stage's faster layout
    and OpenBLAS core type without timing the data pipeline."""
    out = {}
    for stage in STAGES:
        out[stage] = {}
        for layout in ("nchw", "channels_last"):
            torch.manual_seed(0)
            m, params = stage_model(stage, a.size)
            m.train()
            x = torch.rand(BATCH, 3, a.size, a.size)
            y = (torch.arange(BATCH) % 2).float().unsqueeze(1)
            if layout == "channels_last":
                m = m.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            opt = adam(params if params is not None else m.parameters(), 1e-3)
            loss_fn = nn.BCELoss()

            def step():
                opt.zero_grad(set_to_none=True)
                loss_fn(m(x), y).backward()
                opt.step()

            step()
            t0 = time.perf_counter()
            for _ in range(a.calib_steps):
                step()
            out[stage][layout] = (time.perf_counter() - t0) / a.calib_steps
    print(json.dumps(out))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description="the lesson in PyTorch (see the module docstring)")
    p.add_argument("mode", choices=("run", "calibrate"))
    p.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "cats_and_dogs_filtered"))
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--val-steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--layouts", default="nchw,nchw,nchw")
    p.add_argument("--preprocess", choices=("model", "rescale"), default="model")
    p.add_argument("--calib-steps", type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    (run if a.mode == "run" else calibrate)(a)


if __name__ == "__main__":
    main()
