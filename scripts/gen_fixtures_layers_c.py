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

# ------------------------------------------------------------------ convolutions
def tf_pad(x, kernel, stride, dilation, same):
    """x NCHW; TensorFlow's 'same' padding (the odd cell after) made explicit."""
    if not same:
        return x
    pads = []
    for size, k, s, d in zip(x.shape[2:], kernel, stride, dilation):
        ek = (k - 1) * d + 1
        out = -(-size // s)
        total = max((out - 1) * s + ek - size, 0)
        pads.append((total // 2, total - total // 2))
    return F.pad(x, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))


def conv_ref(x, kernel, bias, stride, dilation, same, groups):
    """x NHWC, kernel (kh, kw, C / groups, F) as Keras holds it."""
    w = torch.from_numpy(np.ascontiguousarray(kernel.astype(np.float64).transpose(3, 2, 0, 1)))
    t = tf_pad(nchw(x), kernel.shape[:2], stride, dilation, same)
    b = None if bias is None else t64(bias)
    return nhwc(F.conv2d(t, w, b, stride=stride, dilation=dilation, groups=groups))


# Conv2D with dilation_rate and with groups.
x = normal(2, 7, 6, 4)
arrays["conv/x"] = x
for name, k, s_, d, same, groups, filt in (
        ("dil_same", (3, 3), (1, 1), (2, 2), True, 1, 3),
        ("dil_valid", (3, 2), (1, 1), (2, 3), False, 1, 2),
        ("groups", (3, 3), (2, 2), (1, 1), True, 2, 6),
        ("groups_dil", (2, 2), (1, 1), (2, 1), True, 4, 4)):
    kernel = normal(k[0], k[1], 4 // groups, filt, scale=0.5)
    bias = normal(filt, scale=0.1)
    arrays["conv/%s/kernel" % name] = kernel
    arrays["conv/%s/bias" % name] = bias
    arrays["conv/%s/y" % name] = conv_ref(x, kernel, bias, s_, d, same, groups)

# DepthwiseConv2D with depth_multiplier 3 (and dilation): groups C, kernel (kh, kw, C, dm).
for name, k, s_, d, same, dm in (("dm3", (3, 3), (2, 2), (1, 1), True, 3),
                                 ("dm2_dil", (3, 3), (1, 1), (2, 2), False, 2)):
    kernel = normal(k[0], k[1], 4, dm, scale=0.5)
    bias = normal(4 * dm, scale=0.1)
    arrays["dw/%s/kernel" % name] = kernel
    arrays["dw/%s/bias" % name] = bias
    arrays["dw/%s/y" % name] = conv_ref(x, kernel.reshape(k[0], k[1], 1, 4 * dm), bias, s_, d,
                                        same, 4)

# SeparableConv2D: depthwise (dm 2, no bias) then pointwise to 5 with bias.
dk = normal(3, 3, 4, 2, scale=0.5)
pk = normal(1, 1, 8, 5, scale=0.5)
pb = normal(5, scale=0.1)
mid = conv_ref(x, dk.reshape(3, 3, 1, 8), None, (1, 1), (1, 1), True, 4)
arrays["sep/depthwise_kernel"] = dk
arrays["sep/pointwise_kernel"] = pk
arrays["sep/bias"] = pb
arrays["sep/y"] = conv_ref(mid, pk, pb, (1, 1), (1, 1), False, 1)
mid = conv_ref(x, dk.reshape(3, 3, 1, 8), None, (2, 2), (1, 1), False, 4)
arrays["sep/y_s2_valid"] = conv_ref(mid, pk, pb, (1, 1), (1, 1), False, 1)

# ------------------------------------------------------------------ pooling, 'same'
# TensorFlow's 'same' pooling: padded cells never win a max, never count in a mean.
def pool_same(x, k, s_, kind):
    t = nchw(x)
    pads = []
    for size, kk, ss in zip(t.shape[2:], k, s_):
        out = -(-size // ss)
        total = max((out - 1) * ss + kk - size, 0)
        pads.append((total // 2, total - total // 2))
    pad = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    if kind == "max":
        return nhwc(F.max_pool2d(F.pad(t, pad, value=-math.inf), k, s_))
    total = F.avg_pool2d(F.pad(t, pad), k, s_) * (k[0] * k[1])
    count = F.avg_pool2d(F.pad(torch.ones_like(t), pad), k, s_) * (k[0] * k[1])
    return nhwc(total / count)


x = normal(2, 5, 7, 3)
arrays["pool/x"] = x
for kind in ("max", "avg"):
    arrays["pool/%s_3x3_s2" % kind] = pool_same(x, (3, 3), (2, 2), kind)
    arrays["pool/%s_2x3_s1" % kind] = pool_same(x, (2, 3), (1, 1), kind)
arrays["pool/gap_keepdims"] = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)

# ------------------------------------------------------------------ normalisation layers
x = normal(2, 3, 4, 5, scale=2.0)
X = x.astype(np.float64)
arrays["norm/x"] = x
# Rescaling with a scalar and with one value per channel (EfficientNet's stem).
scale = np.array([0.5, -2.0, 1.5, 0.25, 3.0], np.float32)
offset = np.float32(0.75)
arrays["norm/rescaling_scale"] = scale
arrays["norm/rescaling_y"] = X * scale.astype(np.float64) + np.float64(offset)
# Normalization, axis -1, with weights; and axis 2 (W) with constant mean and variance.
mean = normal(5)
var = (rng.random(5) + 0.1).astype(np.float32)
var[2] = 0.0  # sqrt(0) < 1e-7: Keras divides by epsilon
arrays["norm/norm_mean"] = mean
arrays["norm/norm_variance"] = var
arrays["norm/norm_y"] = (X - mean) / np.maximum(np.sqrt(var.astype(np.float64)), 1e-7)
arrays["norm/norm_y_invert"] = X * np.maximum(np.sqrt(var.astype(np.float64)), 1e-7) + mean
mean_w = normal(4)
var_w = (rng.random(4) + 0.1).astype(np.float32)
arrays["norm/norm_w_mean"] = mean_w
arrays["norm/norm_w_variance"] = var_w
arrays["norm/norm_w_y"] = (X - mean_w[None, None, :, None]) / np.sqrt(
    var_w.astype(np.float64))[None, None, :, None]
# LayerNormalization over the channels (ConvNeXt, epsilon 1e-6) and over (H, W, C).
gamma = normal(5)
beta = normal(5)
arrays["norm/ln_gamma"] = gamma
arrays["norm/ln_beta"] = beta
arrays["norm/ln_y"] = F.layer_norm(t64(x), (5,), t64(gamma), t64(beta), eps=1e-6).numpy()
gamma3 = normal(3, 4, 5)
beta3 = normal(3, 4, 5)
arrays["norm/ln3_gamma"] = gamma3
arrays["norm/ln3_beta"] = beta3
arrays["norm/ln3_y"] = F.layer_norm(t64(x), (3, 4, 5), t64(gamma3), t64(beta3), eps=1e-3).numpy()
# LayerScale.
ls = normal(5)
arrays["norm/ls_gamma"] = ls
arrays["norm/ls_y"] = X * ls.astype(np.float64)

# ------------------------------------------------------------------ the rest
x = normal(2, 3, 4, 5, scale=2.0)
T = t64(x)
arrays["more/x"] = x
arrays["more/leaky_0.3"] = F.leaky_relu(T, 0.3).numpy()
arrays["more/elu_0.5"] = F.elu(T, 0.5).numpy()
# PReLU with alpha shared along H and W (Keras shared_axes [1, 2]): alpha (1, 1, 5).
alpha = normal(1, 1, 5, scale=0.5)
arrays["more/prelu_alpha"] = alpha
arrays["more/prelu_y"] = torch.where(T > 0, T, t64(alpha) * T).numpy()
for axis in (1, 2, 3):
    arrays["more/softmax_%d" % axis] = F.softmax(T, dim=axis).numpy()
arrays["more/permute_312"] = x.transpose(0, 3, 1, 2)
arrays["more/cropping_1021"] = x[:, 1:3, 2:3, :]
# UpSampling2D: nearest, and TensorFlow's half-pixel bilinear (torch's align_corners=False).
arrays["more/up_nearest_23"] = nhwc(F.interpolate(nchw(x), scale_factor=(2, 3), mode="nearest"))
arrays["more/up_bilinear_23"] = nhwc(F.interpolate(nchw(x), scale_factor=(2, 3), mode="bilinear",
                                                   align_corners=False))


# Conv2DTranspose as TensorFlow defines it: the input gradient of the convolution
# from the output back to the input, padded the TF way, by autograd.
def deconv_length(n, k, s_, d, same, op):
    ek = (k - 1) * d + 1
    if op is None:
        return n * s_ if same else n * s_ + max(ek - s_, 0)
    return (n - 1) * s_ + ek - 2 * (ek // 2 if same else 0) + op


def deconv_ref(x, kernel, bias, s_, d, same, op):
    kh, kw, f, c = kernel.shape
    oh = deconv_length(x.shape[1], kh, s_[0], d[0], same, op and op[0])
    ow = deconv_length(x.shape[2], kw, s_[1], d[1], same, op and op[1])
    u = torch.zeros(x.shape[0], f, oh, ow, dtype=torch.float64, requires_grad=True)
    w = torch.from_numpy(np.ascontiguousarray(kernel.astype(np.float64).transpose(3, 2, 0, 1)))
    z = F.conv2d(tf_pad(u, (kh, kw), s_, d, same), w, stride=s_, dilation=d)
    assert z.shape[2:] == x.shape[1:3], (z.shape, x.shape)
    z.backward(nchw(x))
    return u.grad.numpy().transpose(0, 2, 3, 1) + bias.astype(np.float64)


x = normal(2, 3, 4, 3)
arrays["deconv/x"] = x
for name, k, s_, d, same, op, f in (("same_s2", (3, 3), (2, 2), (1, 1), True, None, 4),
                                    ("valid_s2", (3, 2), (2, 2), (1, 1), False, None, 2),
                                    ("valid_k1_s3", (1, 1), (3, 3), (1, 1), False, None, 2),
                                    ("same_op", (3, 3), (2, 2), (1, 1), True, (1, 0), 2),
                                    ("dil", (3, 3), (1, 1), (2, 2), True, None, 2)):
    kernel = normal(k[0], k[1], f, 3, scale=0.5)
    bias = normal(f, scale=0.1)
    arrays["deconv/%s/kernel" % name] = kernel
    arrays["deconv/%s/bias" % name] = bias
    arrays["deconv/%s/y" % name] = deconv_ref(x, kernel, bias, s_, d, same, op)
# A cross-check of the definition against torch's own transposed convolution
# where the padding is symmetric (valid, no output padding).
kern = arrays["deconv/valid_s2/kernel"]
ref = F.conv_transpose2d(nchw(x), torch.from_numpy(kern.astype(np.float64).transpose(3, 2, 0, 1)),
                         stride=2)
assert np.allclose(nhwc(ref) + arrays["deconv/valid_s2/bias"].astype(np.float64),
                   arrays["deconv/valid_s2/y"])

os.makedirs(os.path.dirname(OUT), exist_ok=True)
write_fixture(OUT, arrays)
print("wrote %d arrays to %s" % (len(arrays), OUT))
