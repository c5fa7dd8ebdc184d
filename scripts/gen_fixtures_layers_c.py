#!/usr/bin/python3
"""Reference outputs for the layer kinds added for Keras Applications breadth
(merges, activations, preprocessing and normalisation layers, convolution
options), written to tests/fixtures/layers/layers_c.bin for the
tests/test_layers_*.c files.

Run with Debian's python3 (numpy, torch): /usr/bin/python3 scripts/gen_fixtures_layers_c.py
Deterministic: a fixed seed; references are computed in float64 by torch or
numpy from each layer's Keras definition (written out below where torch has
no function of that name) and stored as float32. Arrays are NHWC with the
batch first, as graft holds activations; weights are in Keras layouts.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "layers", "layers_c.bin")

rng = np.random.default_rng(20261203)
arrays = {}


def normal(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def t64(x):
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float64).transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.numpy().transpose(0, 2, 3, 1)


# ------------------------------------------------------------------ merges
# Concatenate along each axis of (2, 3, 4, 5)-shaped inputs that differ there.
a = normal(2, 3, 4, 5)
for axis, other in ((1, (2, 2, 4, 5)), (2, (2, 3, 1, 5)), (3, (2, 3, 4, 2)), (-1, (2, 3, 4, 3))):
    b = normal(*other)
    arrays["concat/%d/a" % axis] = a
    arrays["concat/%d/b" % axis] = b
    arrays["concat/%d/y" % axis] = torch.cat([t64(a), t64(b)], dim=axis).numpy()

# Squeeze-and-excitation: (N, 1, 1, C) x (N, H, W, C), and a three-way merge.
x = normal(2, 4, 3, 5)
g = normal(2, 1, 1, 5)
h = normal(2, 4, 3, 1)
arrays["merge/x"] = x
arrays["merge/g"] = g
arrays["merge/h"] = h
X, G, H = t64(x), t64(g), t64(h)
arrays["merge/multiply_xg"] = (X * G).numpy()
arrays["merge/multiply_gxh"] = (G * X * H).numpy()
arrays["merge/subtract_xg"] = (X - G).numpy()
arrays["merge/average_gxh"] = ((G + X + H) / 3).numpy()
arrays["merge/maximum_gxh"] = torch.maximum(torch.maximum(G, X), H).numpy()
arrays["merge/minimum_gxh"] = torch.minimum(torch.minimum(G, X), H).numpy()

# ------------------------------------------------------------------ activations
# Keras's definitions: hard_sigmoid and hard_swish as Keras 3 (relu6(x + 3) / 6,
# which MobileNetV3 in Keras Applications uses); gelu exact and its tanh form;
# leaky_relu with Keras 3's negative_slope 0.2; selu with Keras's constants.
x = normal(2, 3, 4, 6, scale=3.0)
T = t64(x)
arrays["act/x"] = x
ACTS = {
    "linear": T,
    "relu": F.relu(T),
    "relu6": F.relu6(T),
    "sigmoid": torch.sigmoid(T),
    "tanh": torch.tanh(T),
    "softmax": F.softmax(T, dim=-1),
    "swish": F.silu(T),
    "silu": F.silu(T),
    "hard_sigmoid": F.relu6(T + 3) / 6,
    "hard_swish": T * F.relu6(T + 3) / 6,
    "hard_silu": T * F.relu6(T + 3) / 6,
    "gelu": 0.5 * T * (1 + torch.erf(T / math.sqrt(2))),
    "gelu_approximate": 0.5 * T * (1 + torch.tanh(math.sqrt(2 / math.pi) * (T + 0.044715 * T ** 3))),
    "softplus": torch.log1p(torch.exp(T)),
    "softsign": T / (1 + T.abs()),
    "selu": 1.0507009873554804934193349852946 * torch.where(
        T > 0, T, 1.6732632423543772848170429916717 * torch.expm1(T)),
    "elu": torch.where(T > 0, T, torch.expm1(T)),
    "exponential": torch.exp(T),
    "leaky_relu": torch.where(T >= 0, T, 0.2 * T),
}
# Cross-checks against torch's own functions where it has them.
assert torch.allclose(ACTS["hard_sigmoid"], F.hardsigmoid(T))
assert torch.allclose(ACTS["hard_swish"], F.hardswish(T))
assert torch.allclose(ACTS["gelu"], F.gelu(T))
assert torch.allclose(ACTS["gelu_approximate"], F.gelu(T, approximate="tanh"))
assert torch.allclose(ACTS["selu"], F.selu(T))
assert torch.allclose(ACTS["softplus"], F.softplus(T))
for name, y in ACTS.items():
    arrays["act/" + name] = y.numpy()

os.makedirs(os.path.dirname(OUT), exist_ok=True)
write_fixture(OUT, arrays)
print("wrote %d arrays to %s" % (len(arrays), OUT))
