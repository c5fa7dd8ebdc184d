#!/usr/bin/python3
"""Reference outputs for DepthwiseConv2D and BatchNormalization
(tests/test_depthwise_conv2d.c, tests/test_batch_norm.c).

PyTorch computes the references, an implementation independent of graft:
  - DepthwiseConv2D is a grouped convolution (groups = C), with TensorFlow's
    'same' padding reproduced by F.pad (the odd pad goes after).
  - BatchNormalization is F.batch_norm. Its running-variance update uses the
    unbiased batch variance, which is what Keras's fused kernel does for
    4-D batches; for 2-D batches Keras uses the biased variance
    (nn.moments), written out here with numpy.

Run with Debian's python3 (numpy, torch):
    /usr/bin/python3 scripts/gen_fixtures_layers_a.py
writes tests/fixtures/layers_a.bin. Deterministic: fixed seeds, float64 maths.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

# graft_activation values
LINEAR, RELU, RELU6, SIGMOID, TANH, SOFTMAX = range(6)


def activate(t, act):
    """t is NCHW; softmax runs over channels as Keras does on NHWC."""
    if act == LINEAR:
        return t
    if act == RELU:
        return F.relu(t)
    if act == RELU6:
        return F.hardtanh(t, 0.0, 6.0)
    if act == SIGMOID:
        return torch.sigmoid(t)
    if act == TANH:
        return torch.tanh(t)
    if act == SOFTMAX:
        return torch.softmax(t, dim=1)
    raise ValueError(act)


def tf_pad(size, k, stride, same):
    """TensorFlow's output size and (before, after) padding."""
    if not same:
        return (size - k) // stride + 1, 0, 0
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def depthwise_case(rng, n, h, w, c, kh, kw, sh, sw, same, dm, bias, act):
    x = rng.standard_normal((n, h, w, c))
    kernel = rng.standard_normal((kh, kw, c, dm)) * 0.5
    b = rng.standard_normal(c * dm) if bias else np.zeros(c * dm)
    oh, top, bottom = tf_pad(h, kh, sh, same)
    ow, left, right = tf_pad(w, kw, sw, same)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    xt = F.pad(xt, (left, right, top, bottom))
    # torch groups=c: output channel c*dm + m uses weight[c*dm + m, 0] = kernel[:, :, c, m]
    wt = torch.from_numpy(kernel).permute(2, 3, 0, 1).reshape(c * dm, 1, kh, kw)
    y = F.conv2d(xt, wt, torch.from_numpy(b), stride=(sh, sw), groups=c)
    y = activate(y, act)
    assert y.shape == (n, c * dm, oh, ow)
    arrays = {
        "cfg": [n, h, w, c, kh, kw, sh, sw, int(same), dm, int(bias), act],
        "x": x,
        "depthwise_kernel": kernel,
        "out": y.permute(0, 2, 3, 1).numpy(),
    }
    if bias:
        arrays["bias"] = b
    return arrays


def batch_norm_case(rng, shape, momentum, epsilon, training):
    """shape: the batch shape (N, ..., C)."""
    c = shape[-1]
    x = rng.standard_normal(shape) * 2.0 + 3.0
    gamma = rng.uniform(0.5, 1.5, c)
    beta = rng.standard_normal(c)
    mmean = rng.standard_normal(c)
    mvar = rng.uniform(0.5, 2.0, c)
    # channels to axis 1 for torch
    xt = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    rm, rv = torch.from_numpy(mmean.copy()), torch.from_numpy(mvar.copy())
    y = F.batch_norm(xt, rm, rv, torch.from_numpy(gamma), torch.from_numpy(beta),
                     training=training, momentum=1.0 - momentum, eps=epsilon)
    arrays = {
        "cfg": [len(shape) - 1, momentum, epsilon, int(training)],
        "x": x,
        "gamma": gamma,
        "beta": beta,
        "moving_mean": mmean,
        "moving_variance": mvar,
        "out": np.moveaxis(y.numpy(), 1, -1),
    }
    if training:
        new_mean = rm.numpy()
        new_var = rv.numpy()
        if len(shape) == 2:
            # Keras's non-fused path: the biased variance moves the average.
            flat = x.reshape(-1, c)
            new_var = mvar * momentum + flat.var(axis=0) * (1.0 - momentum)
            assert np.allclose(new_mean, mmean * momentum + flat.mean(axis=0) * (1 - momentum))
        arrays["new_moving_mean"] = new_mean
        arrays["new_moving_variance"] = new_var
    return arrays


def main():
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(20240611)
    cases = {
        # n, h, w, c, kh, kw, sh, sw, same, dm, bias, act
        "dw_valid_s1_dm1": depthwise_case(rng, 2, 6, 7, 3, 3, 3, 1, 1, False, 1, True, LINEAR),
        "dw_same_s1_dm1_relu6": depthwise_case(rng, 2, 8, 8, 5, 3, 3, 1, 1, True, 1, True, RELU6),
        "dw_same_s2_dm1": depthwise_case(rng, 2, 7, 8, 4, 3, 3, 2, 2, True, 1, True, RELU),
        "dw_same_s2_dm2": depthwise_case(rng, 2, 7, 6, 3, 3, 3, 2, 2, True, 2, True, SIGMOID),
        "dw_valid_s2_dm2": depthwise_case(rng, 1, 9, 8, 2, 3, 3, 2, 2, False, 2, True, TANH),
        "dw_same_k5_s1_dm3_nobias": depthwise_case(rng, 2, 6, 5, 2, 5, 4, 1, 2, True, 3, False,
                                                   LINEAR),
        # 32-channel blocks (the register-blocked path) and a tail of 8
        "dw_same_s1_dm1_c40": depthwise_case(rng, 1, 5, 6, 40, 3, 3, 1, 1, True, 1, True, RELU6),
        "dw_same_s2_dm1_c64": depthwise_case(rng, 2, 5, 5, 64, 3, 3, 2, 2, True, 1, True, LINEAR),
        "bn_inference_rank3": batch_norm_case(rng, (2, 4, 5, 6), 0.99, 1e-3, False),
        "bn_inference_rank1": batch_norm_case(rng, (5, 7), 0.99, 1e-3, False),
        "bn_training_rank3": batch_norm_case(rng, (3, 4, 5, 6), 0.99, 1e-3, True),
        "bn_training_rank3_m09": batch_norm_case(rng, (2, 3, 3, 4), 0.9, 1e-2, True),
        "bn_training_rank1": batch_norm_case(rng, (8, 7), 0.99, 1e-3, True),
    }
    arrays = {}
    for case, values in cases.items():
        for name, value in values.items():
            arrays[case + "/" + name] = value
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "layers_a.bin")
    write_fixture(path, arrays)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
