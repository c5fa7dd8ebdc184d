#!/usr/bin/python3
"""Reference values for graft's losses, accuracy and optimizer steps.

Losses on logits come from PyTorch; losses on probabilities follow the
keras.backend formulas (clip to [1e-7, 1 - 1e-7], +1e-7 inside the log),
written out in numpy. SGD steps come from torch.optim.SGD (whose momentum
form is algebraically Keras's for a constant learning rate); Adam and
RMSprop follow TensorFlow's ResourceApplyAdam / Keras RMSprop formulas,
whose epsilon placement differs from PyTorch's.

Writes tests/fixtures/train.bin. Deterministic.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from fixture_io import write_fixture  # noqa: E402

EPS = 1e-7
rng = np.random.default_rng(1234)
out = {}

# Binary: 6 samples x 3 outputs, some probabilities saturated to test the clip.
p_bin = rng.uniform(0.02, 0.98, size=(6, 3)).astype(np.float32)
p_bin[0, 0] = 0.0
p_bin[1, 2] = 1.0
y_bin = (rng.uniform(size=(6, 3)) > 0.5).astype(np.float32)
c = np.clip(p_bin.astype(np.float64), EPS, 1 - EPS)
bce = -(y_bin * np.log(c + EPS) + (1 - y_bin) * np.log(1 - c + EPS))
out["bin_pred"] = p_bin
out["bin_y"] = y_bin
out["bin_loss"] = [bce.mean(axis=-1).mean()]
out["bin_acc"] = [((p_bin > 0.5).astype(np.float32) == y_bin).mean(axis=-1).mean()]

z_bin = rng.normal(size=(6, 3)).astype(np.float32) * 3
out["binlogit_pred"] = z_bin
out["binlogit_loss"] = [F.binary_cross_entropy_with_logits(torch.tensor(z_bin), torch.tensor(y_bin)).item()]

# Categorical: 5 samples x 4 classes, softmax outputs.
z_cat = rng.normal(size=(5, 4)).astype(np.float32) * 2
p_cat = torch.softmax(torch.tensor(z_cat), dim=1).numpy()
labels = rng.integers(0, 4, size=5)
y_cat = np.eye(4, dtype=np.float32)[labels]
q = p_cat.astype(np.float64) / p_cat.sum(axis=1, keepdims=True)
q = np.clip(q, EPS, 1 - EPS)
out["cat_pred"] = p_cat
out["cat_y"] = y_cat
out["cat_labels"] = labels.astype(np.float32)
out["cat_loss"] = [(-(y_cat * np.log(q)).sum(axis=1)).mean()]
out["cat_acc"] = [(p_cat.argmax(1) == labels).mean()]
out["catlogit_pred"] = z_cat
out["catlogit_loss"] = [F.cross_entropy(torch.tensor(z_cat), torch.tensor(labels)).item()]
cs = np.clip(p_cat.astype(np.float64), EPS, 1 - EPS)
out["sparse_loss"] = [(-np.log(cs[np.arange(5), labels] / cs.sum(axis=1))).mean()]

# Optimizer steps: weights w, two successive gradients g1, g2.
w = rng.normal(size=20).astype(np.float32)
g1 = rng.normal(size=20).astype(np.float32)
g2 = rng.normal(size=20).astype(np.float32)
out["opt_w"] = w
out["opt_g1"] = g1
out["opt_g2"] = g2


def torch_steps(opt_factory):
    t = torch.tensor(w.copy(), requires_grad=True)
    opt = opt_factory([t])
    for g in (g1, g2):
        t.grad = torch.tensor(g)
        opt.step()
    return t.detach().numpy()


out["sgd_momentum"] = torch_steps(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
out["sgd_nesterov"] = torch_steps(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True))
out["sgd_plain"] = torch_steps(lambda p: torch.optim.SGD(p, lr=0.1))


def adam_steps(lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    x, m, v = w.astype(np.float64), np.zeros(20), np.zeros(20)
    for t, g in enumerate((g1, g2), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        x = x - lr_t * m / (np.sqrt(v) + eps)
    return x


def rmsprop_steps(lr=1e-3, rho=0.9, eps=1e-7):
    x, ms = w.astype(np.float64), np.zeros(20)
    for g in (g1, g2):
        ms = rho * ms + (1 - rho) * g * g
        x = x - lr * g / (np.sqrt(ms) + eps)
    return x


out["adam"] = adam_steps()
out["adam_small_lr"] = adam_steps(lr=1e-5)
out["rmsprop"] = rmsprop_steps()

here = os.path.dirname(os.path.abspath(__file__))
write_fixture(os.path.join(here, "..", "tests", "fixtures", "train.bin"), out)
