#!/usr/bin/python3
"""Reference fixtures for the zoo's architectures (tests/test_zoo_reference.c).

For each case this writes, into OUTDIR:
  zoo_<case>.h5   Keras weights-only HDF5 (root `layer_names`, per-layer
                  `weight_names`, datasets <layer>/<layer>/<weight>:0, as
                  `model.save_weights` writes them) with random weights and
                  random BatchNormalization statistics, top included;
  zoo_<case>.bin  the fixture format of scripts/fixture_io.py: `input`
                  (N, H, W, C), `features` (the base's output without top,
                  NHWC) and `top` (the class probabilities).

The reference forward pass is PyTorch (float64), written here from the Keras
Applications sources, independent of graft: weights are transplanted to
PyTorch's layouts (NHWC -> NCHW, HWIO -> OIHW, depthwise HWC1 -> C1HW), TF's
'same' padding is an explicit F.pad (the extra row/column goes after), Keras's
Flatten flattens in NHWC order.

Deterministic: every array comes from numpy RandomState seeded per case.
The weight files are large for ResNet50 and VGG16 (100+ MB): the test writes
them into a temporary folder; nothing here is committed but this script.

usage: gen_fixtures_zoo.py OUTDIR [CASE ...]
"""
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

N = 2
CLASSES = 10

# name: (arch, alpha, depth_multiplier, (H, W), seed)
CASES = {
    "mobilenet_a25_64": ("mobilenet", 0.25, 1, (64, 64), 1),
    "mobilenet_a50_150": ("mobilenet", 0.5, 1, (150, 150), 2),
    "mobilenet_a25_dm2_35": ("mobilenet", 0.25, 2, (35, 37), 3),
    "mobilenet_v2_a35_64": ("mobilenet_v2", 0.35, 1, (64, 64), 4),
    "mobilenet_v2_a50_45": ("mobilenet_v2", 0.5, 1, (45, 45), 5),
    "resnet50_32": ("resnet50", 1.0, 1, (32, 32), 6),
    "vgg16_64": ("vgg16", 1.0, 1, (64, 64), 7),
}


class Graph:
    """Keras layers in model.layers order: (name, kind, cfg, inputs)."""

    def __init__(self, h, w):
        self.layers = [("input_1", "input", {"shape": (h, w, 3)}, [])]
        self.shapes = {"input_1": (h, w, 3)}
        self.base_end = None

    def add(self, name, kind, cfg, inputs):
        inputs = [inputs] if isinstance(inputs, str) else inputs
        self.layers.append((name, kind, cfg, inputs))
        self.shapes[name] = out_shape(kind, cfg, [self.shapes[i] for i in inputs])
        return name


def same_pad(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def out_shape(kind, cfg, ins):
    x = ins[0]
    if kind in ("conv", "dwconv", "maxpool"):
        k, s = cfg["k"], cfg["s"]
        h, w = x[0], x[1]
        if cfg["pad"] == "same":
            oh, ow = -(-h // s), -(-w // s)
        else:
            oh, ow = (h - k) // s + 1, (w - k) // s + 1
        c = cfg["filters"] if kind == "conv" else x[2] * cfg.get("dm", 1)
        return (oh, ow, c)
    if kind == "zeropad":
        t, b, l, r = cfg["pad"]
        return (x[0] + t + b, x[1] + l + r, x[2])
    if kind in ("gap", "gmp"):
        return (x[2],)
    if kind == "flatten":
        return (int(np.prod(x)),)
    if kind == "dense":
        return (cfg["units"],)
    if kind == "reshape":
        return tuple(cfg["shape"])
    return x


def bn_cfg(eps):
    return {"eps": eps}


# ------------------------------------------------------------ architectures


def mobilenet(g, alpha, dm):
    def relu6(name, x):
        return g.add(name, "relu6", {}, x)

    x = g.add("conv1", "conv", {"filters": int(32 * alpha), "k": 3, "s": 2, "pad": "same", "bias": False}, "input_1")
    x = g.add("conv1_bn", "bn", bn_cfg(1e-3), x)
    x = relu6("conv1_relu", x)
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
              (512, 1), (512, 1), (1024, 2), (1024, 1)]
    for i, (f, s) in enumerate(blocks, 1):
        if s == 2:
            x = g.add("conv_pad_%d" % i, "zeropad", {"pad": (0, 1, 0, 1)}, x)
        x = g.add("conv_dw_%d" % i, "dwconv", {"k": 3, "s": s, "pad": "same" if s == 1 else "valid", "dm": dm, "bias": False}, x)
        x = g.add("conv_dw_%d_bn" % i, "bn", bn_cfg(1e-3), x)
        x = relu6("conv_dw_%d_relu" % i, x)
        x = g.add("conv_pw_%d" % i, "conv", {"filters": int(f * alpha), "k": 1, "s": 1, "pad": "same", "bias": False}, x)
        x = g.add("conv_pw_%d_bn" % i, "bn", bn_cfg(1e-3), x)
        x = relu6("conv_pw_%d_relu" % i, x)
    g.base_end = x
    x = g.add("global_average_pooling2d", "gap", {}, x)
    x = g.add("reshape_1", "reshape", {"shape": (1, 1, int(1024 * alpha))}, x)
    x = g.add("dropout", "identity", {}, x)
    x = g.add("conv_preds", "conv", {"filters": CLASSES, "k": 1, "s": 1, "pad": "same", "bias": True}, x)
    x = g.add("reshape_2", "reshape", {"shape": (CLASSES,)}, x)
    g.add("act_softmax", "softmax", {}, x)


def make_divisible(v, divisor=8):
    nv = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if nv < 0.9 * v:
        nv += divisor
    return nv


def mobilenet_v2(g, alpha):
    def bn(name, x):
        return g.add(name, "bn", bn_cfg(1e-3), x)

    x = g.add("Conv1", "conv", {"filters": make_divisible(32 * alpha), "k": 3, "s": 2, "pad": "same", "bias": False}, "input_1")
    x = bn("bn_Conv1", x)
    x = g.add("Conv1_relu", "relu6", {}, x)
    spec = [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
            (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6),
            (320, 1, 6)]
    for bid, (filters, stride, expansion) in enumerate(spec):
        inp = x
        cin = g.shapes[x][2]
        pw = make_divisible(int(filters * alpha))
        if bid:
            p = "block_%d_" % bid
            x = g.add(p + "expand", "conv", {"filters": expansion * cin, "k": 1, "s": 1, "pad": "same", "bias": False}, x)
            x = bn(p + "expand_BN", x)
            x = g.add(p + "expand_relu", "relu6", {}, x)
        else:
            p = "expanded_conv_"
        if stride == 2:
            h, w = g.shapes[x][0], g.shapes[x][1]
            x = g.add(p + "pad", "zeropad", {"pad": (1 - (1 - h % 2), 1, 1 - (1 - w % 2), 1)}, x)
        x = g.add(p + "depthwise", "dwconv", {"k": 3, "s": stride, "pad": "same" if stride == 1 else "valid", "dm": 1, "bias": False}, x)
        x = bn(p + "depthwise_BN", x)
        x = g.add(p + "depthwise_relu", "relu6", {}, x)
        x = g.add(p + "project", "conv", {"filters": pw, "k": 1, "s": 1, "pad": "same", "bias": False}, x)
        x = bn(p + "project_BN", x)
        if cin == pw and stride == 1:
            x = g.add(p + "add", "add", {}, [inp, x])
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = g.add("Conv_1", "conv", {"filters": last, "k": 1, "s": 1, "pad": "valid", "bias": False}, x)
    x = bn("Conv_1_bn", x)
    x = g.add("out_relu", "relu6", {}, x)
    g.base_end = x
    x = g.add("global_average_pooling2d", "gap", {}, x)
    g.add("predictions", "dense", {"units": CLASSES, "act": "softmax"}, x)


def resnet50(g):
    def conv(name, x, f, k, s, pad="valid"):
        return g.add(name, "conv", {"filters": f, "k": k, "s": s, "pad": pad, "bias": True}, x)

    def bn(name, x):
        return g.add(name, "bn", bn_cfg(1.001e-5), x)

    x = g.add("conv1_pad", "zeropad", {"pad": (3, 3, 3, 3)}, "input_1")
    x = conv("conv1_conv", x, 64, 7, 2)
    x = bn("conv1_bn", x)
    x = g.add("conv1_relu", "relu", {}, x)
    x = g.add("pool1_pad", "zeropad", {"pad": (1, 1, 1, 1)}, x)
    x = g.add("pool1_pool", "maxpool", {"k": 3, "s": 2, "pad": "valid"}, x)
    for st, (f, blocks, stride1) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
        for b in range(1, blocks + 1):
            p = "conv%d_block%d" % (st + 2, b)
            s = stride1 if b == 1 else 1
            inp = x
            y = conv(p + "_1_conv", inp, f, 1, s)
            y = bn(p + "_1_bn", y)
            y = g.add(p + "_1_relu", "relu", {}, y)
            y = conv(p + "_2_conv", y, f, 3, 1, "same")
            y = bn(p + "_2_bn", y)
            y = g.add(p + "_2_relu", "relu", {}, y)
            if b == 1:
                sc = conv(p + "_0_conv", inp, 4 * f, 1, s)
            y = conv(p + "_3_conv", y, 4 * f, 1, 1)
            if b == 1:
                sc = bn(p + "_0_bn", sc)
            else:
                sc = inp
            y = bn(p + "_3_bn", y)
            y = g.add(p + "_add", "add", {}, [sc, y])
            x = g.add(p + "_out", "relu", {}, y)
    g.base_end = x
    x = g.add("avg_pool", "gap", {}, x)
    g.add("predictions", "dense", {"units": CLASSES, "act": "softmax"}, x)


def vgg16(g):
    x = "input_1"
    for b, (f, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for k in range(1, n + 1):
            x = g.add("block%d_conv%d" % (b, k), "conv", {"filters": f, "k": 3, "s": 1, "pad": "same", "bias": True, "act": "relu"}, x)
        x = g.add("block%d_pool" % b, "maxpool", {"k": 2, "s": 2, "pad": "valid"}, x)
    g.base_end = x
    x = g.add("flatten", "flatten", {}, x)
    x = g.add("fc1", "dense", {"units": 4096, "act": "relu"}, x)
    x = g.add("fc2", "dense", {"units": 4096, "act": "relu"}, x)
    g.add("predictions", "dense", {"units": CLASSES, "act": "softmax"}, x)


# ------------------------------------------------------------ weights


def make_weights(g, rng):
    """Keras layouts: Conv2D kernel HWIO, DepthwiseConv2D HWC1, Dense IO."""
    weights = {}
    for name, kind, cfg, inputs in g.layers:
        cin = g.shapes[inputs[0]][-1] if inputs else 0
        if kind == "conv":
            k, f = cfg["k"], cfg["filters"]
            std = math.sqrt(2.0 / (k * k * cin))
            ws = [("kernel", rng.normal(0, std, (k, k, cin, f)))]
            if cfg["bias"]:
                ws.append(("bias", rng.uniform(-0.1, 0.1, f)))
            weights[name] = ws
        elif kind == "dwconv":
            k, dm = cfg["k"], cfg["dm"]
            weights[name] = [("depthwise_kernel", rng.normal(0, math.sqrt(2.0 / (k * k)), (k, k, cin, dm)))]
        elif kind == "bn":
            # Small gammas where residual branches meet keep ResNet50's sums
            # (and so its softmax) out of saturation.
            lo, hi = (0.1, 0.3) if name.endswith(("_0_bn", "_3_bn")) else (0.6, 1.4)
            weights[name] = [("gamma", rng.uniform(lo, hi, cin)), ("beta", rng.uniform(-0.2, 0.2, cin)),
                             ("moving_mean", rng.uniform(-0.3, 0.3, cin)),
                             ("moving_variance", rng.uniform(0.6, 1.6, cin))]
        elif kind == "dense":
            cin = g.shapes[inputs[0]][0]
            weights[name] = [("kernel", rng.normal(0, math.sqrt(2.0 / cin), (cin, cfg["units"]))),
                             ("bias", rng.uniform(-0.1, 0.1, cfg["units"]))]
    return {k: [(n, a.astype(np.float32)) for n, a in v] for k, v in weights.items()}


def write_keras_h5(path, g, weights):
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _, _, _ in g.layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.11.0"
        for name, _, _, _ in g.layers:
            grp = f.create_group(name)
            ws = weights.get(name, [])
            grp.attrs["weight_names"] = np.array([("%s/%s:0" % (name, w)).encode() for w, _ in ws])
            for w, a in ws:
                grp.create_dataset("%s/%s:0" % (name, w), data=a)


# ------------------------------------------------------------ the PyTorch reference


def t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def pad_same(x, k, s):
    h, w = x.shape[2], x.shape[3]
    pt, pb = same_pad(h, k, s)
    pl, pr = same_pad(w, k, s)
    return F.pad(x, (pl, pr, pt, pb))


def forward(g, weights, x_nhwc):
    acts = {"input_1": t(x_nhwc).permute(0, 3, 1, 2)}  # NCHW from here on
    for name, kind, cfg, inputs in g.layers[1:]:
        x = acts[inputs[0]]
        w = {n: t(a) for n, a in weights.get(name, [])}
        if kind == "conv":
            if x.dim() == 2:
                x = x[:, :, None, None]
            if cfg["pad"] == "same":
                x = pad_same(x, cfg["k"], cfg["s"])
            y = F.conv2d(x, w["kernel"].permute(3, 2, 0, 1), w.get("bias"), stride=cfg["s"])
            if cfg.get("act") == "relu":
                y = F.relu(y)
        elif kind == "dwconv":
            if cfg["pad"] == "same":
                x = pad_same(x, cfg["k"], cfg["s"])
            k = w["depthwise_kernel"]  # (kh, kw, C, dm) -> (C*dm, 1, kh, kw), output c*dm+q
            kh, kw, c, dm = k.shape
            y = F.conv2d(x, k.permute(2, 3, 0, 1).reshape(c * dm, 1, kh, kw), stride=cfg["s"], groups=c)
        elif kind == "bn":
            y = F.batch_norm(x, w["moving_mean"], w["moving_variance"], w["gamma"], w["beta"],
                             training=False, eps=cfg["eps"])
        elif kind == "relu6":
            y = torch.clamp(x, 0.0, 6.0)
        elif kind == "relu":
            y = F.relu(x)
        elif kind == "zeropad":
            tp, bp, lp, rp = cfg["pad"]
            y = F.pad(x, (lp, rp, tp, bp))
        elif kind == "maxpool":
            y = F.max_pool2d(x, cfg["k"], cfg["s"])
        elif kind == "gap":
            y = x.mean(dim=(2, 3))
        elif kind == "flatten":
            y = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # Keras flattens NHWC
        elif kind == "dense":
            y = x @ w["kernel"] + w["bias"]
            if cfg["act"] == "relu":
                y = F.relu(y)
            elif cfg["act"] == "softmax":
                y = torch.softmax(y, dim=1)
        elif kind == "add":
            y = acts[inputs[0]] + acts[inputs[1]]
        elif kind == "softmax":
            y = torch.softmax(x, dim=1)
        elif kind == "reshape":
            y = x.reshape(x.shape[0], -1)
            if len(cfg["shape"]) == 3:  # (1, 1, C) in NHWC is (C, 1, 1) in NCHW
                y = y[:, :, None, None]
        elif kind == "identity":
            y = x
        else:
            raise ValueError(kind)
        acts[name] = y
    feats = acts[g.base_end].permute(0, 2, 3, 1)
    return feats.numpy(), acts[g.layers[-1][0]].reshape(x_nhwc.shape[0], -1).numpy()


def build(case):
    arch, alpha, dm, (h, w), seed = CASES[case]
    g = Graph(h, w)
    if arch == "mobilenet":
        mobilenet(g, alpha, dm)
    elif arch == "mobilenet_v2":
        mobilenet_v2(g, alpha)
    elif arch == "resnet50":
        resnet50(g)
    else:
        vgg16(g)
    return g, seed


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    cases = sys.argv[2:] or list(CASES)
    torch.set_num_threads(1)
    for case in cases:
        g, seed = build(case)
        rng = np.random.RandomState(seed)
        weights = make_weights(g, rng)
        h, w = g.shapes["input_1"][:2]
        x = rng.uniform(-1.0, 1.0, (N, h, w, 3)).astype(np.float32)
        with torch.no_grad():
            feats, top = forward(g, weights, x)
        write_keras_h5(os.path.join(out, "zoo_%s.h5" % case), g, weights)
        write_fixture(os.path.join(out, "zoo_%s.bin" % case), {"input": x, "features": feats, "top": top})


if __name__ == "__main__":
    main()
