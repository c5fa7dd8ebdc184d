#!/usr/bin/python3
"""PyTorch peer for bench_features: the same bases without top (torchvision's
feature extractors, a hand-built MobileNet v1, and scripts/gen_zoo_ref.py's
modules where torchvision has none), random weights, batch 32 of SIDE x SIDE x 3.
  features  eval() and inference_mode();
  finetune  the same top block as graft's (bench_features.c top_block) and a
            new head (global average pooling, Linear(1), sigmoid) train with
            Adam and binary cross-entropy; the frozen part runs in eval() under
            no_grad, as PyTorch at its best would.
Tries NCHW and channels_last and reports the faster.

usage: features_peer.py ARCH [SECONDS] [THREADS] [features|finetune] [SIDE]
prints: torch ARCH IMG_PER_S img/s LAYOUT
"""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def mobilenet_v1(alpha=1.0):
    def conv_bn(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)]

    def dw_block(cin, cout, stride):
        # Keras pads ((0,1),(0,1)) before a valid stride-2 depthwise convolution.
        pad = [nn.ZeroPad2d((0, 1, 0, 1))] if stride == 2 else []
        return pad + [nn.Conv2d(cin, cin, 3, stride, 0 if stride == 2 else 1, groups=cin, bias=False),
                      nn.BatchNorm2d(cin), nn.ReLU6(inplace=True),
                      nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)]

    spec = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
            (512, 1), (1024, 2), (1024, 1)]
    layers = conv_bn(3, int(32 * alpha), 2)
    cin = int(32 * alpha)
    for f, s in spec:
        layers += dw_block(cin, int(f * alpha), s)
        cin = int(f * alpha)
    return nn.Sequential(*layers)


def split(arch):
    """(frozen part, top block) of the base without top; run in sequence."""
    tv = torchvision.models
    if arch == "mobilenet":
        m = mobilenet_v1()
        return m[:-6], m[-6:]  # the last depthwise block (stride 1)
    if arch == "mobilenet_v2":
        m = tv.mobilenet_v2().features
        return m[:-2], m[-2:]
    if arch in ("vgg16", "vgg19"):
        m = getattr(tv, arch)().features
        cut = [i for i, l in enumerate(m) if isinstance(l, nn.MaxPool2d)][3] + 1  # block5
        return m[:cut], m[cut:]
    if arch in ("resnet50", "resnet101", "resnet152"):
        r = getattr(tv, arch)()
        return (nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3,
                              r.layer4[:-1]), r.layer4[-1])
    if arch in ("resnet50v2", "resnet101v2", "resnet152v2"):
        ref = zoo_ref()
        r = ref.ResNetV2({50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[int(arch[6:-2])])
        stem = Lambda(lambda x: F.max_pool2d(F.pad(r.conv1(F.pad(x, (3, 3, 3, 3))), (1, 1, 1, 1)), 3, 2))
        return (nn.Sequential(stem, r.stages[:3], r.stages[3][:-1]),
                nn.Sequential(r.stages[3][-1], r.post_bn, nn.ReLU()))
    if arch.startswith("densenet"):
        f = getattr(tv, arch)().features
        block = f.denseblock4
        keep = list(block.values())[-1]
        del block[list(block.keys())[-1]]
        return f[:-1], nn.Sequential(DenseLayer(keep), f.norm5, nn.ReLU())
    if arch == "inceptionv3":
        m = tv.inception_v3(aux_logits=False, init_weights=False)
        names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                 "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                 "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b"]
        return nn.Sequential(*[getattr(m, n) for n in names]), m.Mixed_7c
    if arch == "xception":
        x = zoo_ref().Xception()

        def frozen(t):
            t = F.relu(x.b1(x.c1(t)))
            t = F.relu(x.b2(x.c2(t)))
            for i, blk in enumerate(x.entry):
                t = x.down(blk, t, i == 0)
            for blk in x.middle:
                y = t
                for step in blk:
                    y = step["b"](step["s"](F.relu(y)))
                t = t + y
            return x.down(x.exit, t, False)

        stem = Lambda(frozen)
        stem.x = x  # registers the parameters
        return stem, nn.Sequential(x.s14a, x.b14a, nn.ReLU(), x.s14b, x.b14b, nn.ReLU())
    if arch.startswith("efficientnetb"):
        f = getattr(tv, "efficientnet_b" + arch[-1])().features
        return f[:7], f[7:]
    if arch.startswith("mobilenetv3"):
        f = getattr(tv, "mobilenet_v3_" + arch[11:])().features
        return f[:-2], f[-2:]
    if arch.startswith("convnext"):
        # Keras's drop_path_rate is 0; Keras's base without top ends with a
        # LayerNormalization over the channels.
        from torchvision.models.convnext import LayerNorm2d
        f = getattr(tv, "convnext_" + arch[8:])(stochastic_depth_prob=0.0).features
        c = f[7][-1].block[0].out_channels
        return nn.Sequential(*f[:7], f[7][:-1]), nn.Sequential(f[7][-1], LayerNorm2d(c, eps=1e-6))
    raise SystemExit("unknown arch " + arch)


def zoo_ref():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
    import gen_zoo_ref
    return gen_zoo_ref


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class DenseLayer(nn.Module):
    """torchvision's dense layer outside its block: concatenates its output to its input."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return torch.cat([x, self.layer([x])], 1)


def model(arch):
    frozen, top = split(arch)
    return nn.Sequential(frozen, top)


def rate(m, x, seconds):
    with torch.inference_mode():
        m(x)
        n, t0 = 0, time.perf_counter()
        while True:
            m(x)
            n += 1
            t = time.perf_counter() - t0
            if t >= seconds and n >= 2:
                return n * x.shape[0] / t


def train_rate(arch, x, seconds, channels_last):
    frozen, top = split(arch)
    frozen.eval().requires_grad_(False)
    with torch.no_grad():
        c = top(frozen(x[:1])).shape[1]
    head = nn.Linear(c, 1)
    if channels_last:
        frozen, top = frozen.to(memory_format=torch.channels_last), top.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    top.train()
    opt = torch.optim.Adam(list(top.parameters()) + list(head.parameters()), lr=1e-5)
    y = (torch.arange(x.shape[0]) % 2).float().unsqueeze(1)

    def step():
        with torch.no_grad():
            f = frozen(x)
        p = torch.sigmoid(head(top(f).mean(dim=(2, 3))))
        loss = F.binary_cross_entropy(p, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        t = time.perf_counter() - t0
        if t >= seconds and n >= 2:
            return n * x.shape[0] / t


def main():
    arch = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    mode = sys.argv[4] if len(sys.argv) > 4 else "features"
    side = int(sys.argv[5]) if len(sys.argv) > 5 else 150
    torch.manual_seed(0)
    x = torch.rand(32, 3, side, side) * 2 - 1
    if mode == "finetune":
        best = (train_rate(arch, x, seconds / 2, False), "nchw")
        cl = train_rate(arch, x, seconds / 2, True)
    else:
        m = model(arch).eval()
        best = (rate(m, x, seconds / 2), "nchw")
        cl = rate(m.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last), seconds / 2)
    if cl > best[0]:
        best = (cl, "channels_last")
    print("torch %s %.2f img/s %s" % (arch, best[0], best[1]))


if __name__ == "__main__":
    main()
