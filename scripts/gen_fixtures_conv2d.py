#!/usr/bin/python3
"""Reference forward and backward passes for Conv2D (tests/test_conv2d.c).

PyTorch computes them, independently of graft (which runs oneDNN's
primitives, or im2col + GEMM): F.conv2d on NCHW tensors, with TensorFlow's
'same' padding reproduced by F.pad (an odd total pad goes after), the
gradients by autograd for L = sum(out * r). Cases cover 'valid' and 'same',
strides 1 and 2, odd sizes, 1x1 kernels, with and without bias, linear,
ReLU and sigmoid, and channel counts around oneDNN's blocks of 16.

Run with Debian's python3 (numpy, torch):
    /usr/bin/python3 scripts/gen_fixtures_conv2d.py
writes tests/fixtures/conv2d.bin. Deterministic: fixed seeds, float64 maths.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

# graft_activation values
LINEAR, RELU, SIGMOID = 0, 1, 3


def tf_pad(size, k, stride, same):
    """TensorFlow's output size and (before, after) padding."""
    if not same:
        return (size - k) // stride + 1, 0, 0
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def activate(t, act):
    if act == LINEAR:
        return t
    if act == RELU:
        return F.relu(t)
    if act == SIGMOID:
        return torch.sigmoid(t)
    raise ValueError(act)


def conv_case(rng, n, h, w, c, f, kh, kw, sh, sw, same, bias, act):
    x = rng.standard_normal((n, h, w, c))
    kernel = rng.standard_normal((kh, kw, c, f)) * (1.0 / np.sqrt(kh * kw * c))
    b = rng.standard_normal(f) * 0.5 if bias else np.zeros(f)
    oh, top, bottom = tf_pad(h, kh, sh, same)
    ow, left, right = tf_pad(w, kw, sw, same)
    r = rng.standard_normal((n, oh, ow, f))

    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    kt = torch.from_numpy(kernel).requires_grad_(True)
    bt = torch.from_numpy(b).requires_grad_(True)
    # HWIO -> OIHW
    y = F.conv2d(F.pad(xt, (left, right, top, bottom)), kt.permute(3, 2, 0, 1), bt,
                 stride=(sh, sw))
    y = activate(y, act)
    assert y.shape == (n, f, oh, ow)
    (y * torch.from_numpy(r).permute(0, 3, 1, 2)).sum().backward()
    arrays = {
        "cfg": [n, h, w, c, f, kh, kw, sh, sw, int(same), int(bias), act],
        "x": x,
        "kernel": kernel,
        "out": y.detach().permute(0, 2, 3, 1).numpy(),
        "r": r,
        "dx": xt.grad.permute(0, 2, 3, 1).numpy(),
        "dkernel": kt.grad.numpy(),
    }
    if bias:
        arrays["bias"] = b
        arrays["dbias"] = bt.grad.numpy()
    return arrays


def main():
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(20240612)
    cases = {
        # n, h, w, c, f, kh, kw, sh, sw, same, bias, act
        "valid_s1_relu": conv_case(rng, 2, 7, 6, 3, 4, 3, 3, 1, 1, False, True, RELU),
        "same_s1_odd": conv_case(rng, 2, 5, 7, 5, 3, 3, 3, 1, 1, True, True, LINEAR),
        "same_s2_even": conv_case(rng, 2, 8, 6, 4, 6, 3, 3, 2, 2, True, True, RELU),
        "same_s2_odd_k": conv_case(rng, 1, 7, 9, 3, 5, 5, 4, 2, 2, True, False, SIGMOID),
        "valid_s2_rect": conv_case(rng, 2, 9, 8, 2, 3, 3, 2, 2, 1, False, True, LINEAR),
        "pointwise": conv_case(rng, 2, 4, 5, 6, 7, 1, 1, 1, 1, False, False, RELU),
        "pointwise_s2_same": conv_case(rng, 2, 5, 5, 8, 4, 1, 1, 2, 2, True, True, LINEAR),
        # channel counts that straddle oneDNN's blocks of 16
        "same_s1_c17_f33": conv_case(rng, 2, 6, 5, 17, 33, 3, 3, 1, 1, True, True, RELU),
        "valid_s1_c32_f16": conv_case(rng, 3, 6, 6, 32, 16, 3, 3, 1, 1, False, False, RELU),
    }
    arrays = {}
    for case, values in cases.items():
        for name, value in values.items():
            arrays[case + "/" + name] = value
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "conv2d.bin")
    write_fixture(path, arrays)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
