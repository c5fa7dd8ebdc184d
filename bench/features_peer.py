#!/usr/bin/python3
"""PyTorch peer for bench_features: the same bases without top (torchvision's
mobilenet_v2 / resnet50 / vgg16 feature extractors and a hand-built MobileNet
v1), batch 32 of 150x150x3, eval() and inference_mode(), random weights.
Tries NCHW and channels_last and reports the faster.

usage: features_peer.py ARCH [SECONDS] [THREADS]
prints: torch ARCH IMG_PER_S img/s LAYOUT
"""
import sys
import time

import torch
import torch.nn as nn
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


def model(arch):
    if arch == "mobilenet":
        return mobilenet_v1()
    if arch == "mobilenet_v2":
        return torchvision.models.mobilenet_v2().features
    if arch == "resnet50":
        return nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])
    if arch == "vgg16":
        return torchvision.models.vgg16().features
    raise SystemExit("unknown arch " + arch)


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


def main():
    arch = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    torch.manual_seed(0)
    m = model(arch).eval()
    x = torch.rand(32, 3, 150, 150) * 2 - 1
    best = (rate(m, x, seconds / 2), "nchw")
    cl = rate(m.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last), seconds / 2)
    if cl > best[0]:
        best = (cl, "channels_last")
    print("torch %s %.2f img/s %s" % (arch, best[0], best[1]))


if __name__ == "__main__":
    main()
