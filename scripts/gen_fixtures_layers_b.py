#!/usr/bin/python3
"""Reference outputs for the shape-only and elementwise layers (Activation,
ReLU, ZeroPadding2D, the poolings, Flatten, Reshape, Add), written to
tests/fixtures/layers_b.bin for tests/test_{activation,relu,zero_padding2d,
pooling,flatten,add}.c.

Run with Debian's python3 (numpy, torch): /usr/bin/python3 scripts/gen_fixtures_layers_b.py
Deterministic: a fixed seed, and every reference computed in float64 before
being stored as float32.

Arrays are NHWC with the batch first, as graft holds activations. TensorFlow's
'same' pooling is reproduced here from its definition (ceil(in / stride)
windows, the odd padding cell after, padded cells ignored by max and not
counted by average) through torch on an explicitly padded NCHW tensor, and
cross-checked against plain numpy loops before anything is written.
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
                   "layers_b.bin")

rng = np.random.default_rng(20240611)
arrays = {}


def normal(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).double()


def nhwc(t):
    return t.numpy().transpose(0, 2, 3, 1)


# ------------------------------------------------------------------ Activation
# Inputs spread past 6 so relu6's upper clip is exercised.
x = normal(2, 3, 4, 5, scale=4.0)
t = torch.from_numpy(x).double()
arrays["activation/x"] = x
arrays["activation/linear"] = x
arrays["activation/relu"] = F.relu(t).numpy()
arrays["activation/relu6"] = F.relu6(t).numpy()
arrays["activation/sigmoid"] = torch.sigmoid(t).numpy()
arrays["activation/tanh"] = torch.tanh(t).numpy()
arrays["activation/softmax"] = F.softmax(t, dim=-1).numpy()
# A rank-1 input: softmax over the features, as after a Dense layer.
x = normal(3, 7, scale=3.0)
arrays["activation/flat_x"] = x
arrays["activation/flat_softmax"] = F.softmax(torch.from_numpy(x).double(), dim=-1).numpy()

# ------------------------------------------------------------------ ReLU
# cfg: max_value (0: None), negative_slope, threshold
relu_cfgs = [(0.0, 0.0, 0.0), (6.0, 0.0, 0.0), (0.0, 0.1, 0.5), (2.5, 0.2, 1.0), (0.0, 0.3, 0.0),
             (0.5, 0.2, 1.0)]
x = normal(2, 4, 5, 3, scale=4.0)
arrays["relu/x"] = x
for i, (mx, ns, th) in enumerate(relu_cfgs):
    v = x.astype(np.float64)
    # What Keras computes (keras.activations.relu): the thresholded input,
    # clipped to [0, max_value], less the slope times the part below threshold.
    y = v * (v > th)
    y = np.clip(y, 0, mx if mx > 0 else np.inf) - ns * np.maximum(th - v, 0)
    # Keras's documented branches agree wherever max_value >= threshold.
    doc = np.where(v >= th, v, ns * (v - th))
    if mx > 0:
        doc = np.where(v >= mx, mx, doc)
    assert mx < th or np.allclose(y, doc)
    # torch's relu6 / leaky_relu agree on the cases they cover.
    t = torch.from_numpy(v)
    if (mx, ns, th) == (6.0, 0.0, 0.0):
        assert np.allclose(y, F.relu6(t).numpy())
    if mx == 0 and th == 0:
        assert np.allclose(y, F.leaky_relu(t, ns).numpy())
    arrays["relu/%d/cfg" % i] = [mx, ns, th]
    arrays["relu/%d/y" % i] = y

# ------------------------------------------------------------------ ZeroPadding2D
# cfg: top, bottom, left, right
pad_cfgs = [(1, 2, 0, 3), (1, 1, 1, 1), (0, 0, 2, 0)]
x = normal(2, 3, 4, 3)
arrays["zero_padding2d/x"] = x
for i, (top, bottom, left, right) in enumerate(pad_cfgs):
    y = F.pad(nchw(x), (left, right, top, bottom))
    arrays["zero_padding2d/%d/cfg" % i] = [top, bottom, left, right]
    arrays["zero_padding2d/%d/y" % i] = nhwc(y)


# ------------------------------------------------------------------ pooling
def tf_pads(size, k, s, same):
    """TensorFlow's output size and (before, after) pads along one axis."""
    if not same:
        return (size - k) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def pool_torch(x, k, s, same, kind):
    n, h, w, c = x.shape
    oh, pt, pb = tf_pads(h, k[0], s[0], same)
    ow, pl, pr = tf_pads(w, k[1], s[1], same)
    t = nchw(x)
    if kind == "max":
        tp = F.pad(t, (pl, pr, pt, pb), value=-math.inf)
        y = F.max_pool2d(tp, k, s)
    else:
        ones = torch.ones_like(t)
        sums = F.avg_pool2d(F.pad(t, (pl, pr, pt, pb)), k, s, divisor_override=1)
        counts = F.avg_pool2d(F.pad(ones, (pl, pr, pt, pb)), k, s, divisor_override=1)
        y = sums / counts
    assert y.shape[2] == oh and y.shape[3] == ow
    return nhwc(y)


def pool_loops(x, k, s, same, kind):
    n, h, w, c = x.shape
    oh, pt, _ = tf_pads(h, k[0], s[0], same)
    ow, pl, _ = tf_pads(w, k[1], s[1], same)
    y = np.zeros((n, oh, ow, c))
    for oy in range(oh):
        for ox in range(ow):
            ys = [r for r in range(oy * s[0] - pt, oy * s[0] - pt + k[0]) if 0 <= r < h]
            xs = [q for q in range(ox * s[1] - pl, ox * s[1] - pl + k[1]) if 0 <= q < w]
            win = x[:, ys][:, :, xs].astype(np.float64)
            y[:, oy, ox] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return y


# (H, W, C), pool_size, strides, same
pool_cases = [
    ((7, 7, 3), (2, 2), (2, 2), False),
    ((7, 7, 3), (3, 3), (2, 2), True),
    ((5, 6, 2), (2, 3), (1, 2), True),
    ((6, 5, 4), (3, 2), (2, 1), False),
    ((7, 5, 2), (2, 2), (2, 2), True),
    ((4, 4, 3), (3, 3), (1, 1), True),
    ((9, 8, 2), (3, 3), (2, 3), True),
    ((5, 5, 3), (2, 2), (3, 3), False),
]
for i, ((h, w, c), k, s, same) in enumerate(pool_cases):
    x = normal(2, h, w, c)
    arrays["pool/%d/x" % i] = x
    arrays["pool/%d/cfg" % i] = [k[0], k[1], s[0], s[1], 1 if same else 0]
    for kind in ("max", "avg"):
        y = pool_torch(x, k, s, same, kind)
        assert np.allclose(y, pool_loops(x, k, s, same, kind), atol=1e-12)
        arrays["pool/%d/%s" % (i, kind)] = y

x = normal(2, 3, 5, 4)
arrays["global_pool/x"] = x
arrays["global_pool/avg"] = F.adaptive_avg_pool2d(nchw(x), 1).flatten(1).numpy()
arrays["global_pool/max"] = F.adaptive_max_pool2d(nchw(x), 1).flatten(1).numpy()

# ------------------------------------------------------------------ Flatten, Reshape
# Keras flattens channels_last: the order of the NHWC array itself.
x = normal(2, 3, 4, 2)
arrays["flatten/x"] = x
arrays["flatten/y"] = nchw(x).permute(0, 2, 3, 1).reshape(2, -1).numpy()
arrays["reshape/y"] = torch.from_numpy(x).reshape(2, 6, -1).numpy()

# ------------------------------------------------------------------ Add
# Add(x, relu(x), tanh(x)): three distinct inputs from one model input.
x = normal(2, 3, 3, 4, scale=2.0)
t = torch.from_numpy(x).double()
arrays["add/x"] = x
arrays["add/y"] = (t + F.relu(t) + torch.tanh(t)).numpy()

os.makedirs(os.path.dirname(OUT), exist_ok=True)
write_fixture(OUT, arrays)
print("wrote %s (%d arrays, %d bytes)" % (os.path.normpath(OUT), len(arrays), os.path.getsize(OUT)))
