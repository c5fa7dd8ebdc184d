#!/usr/bin/python3
"""Exports the networks of features_peer.py (torchvision's mobilenet_v2 /
resnet50 / vgg16 feature extractors and the hand-built MobileNet v1, eval()
mode, random weights) to ONNX with torch.onnx.export, for the ONNX Runtime
peer of bench_inference.sh. Offline: the weights are random, as graft's.
The input shape is fixed (N, 3, SIZE, SIZE), so ONNX Runtime plans for it.

usage: inference_export.py ARCH SIZE BATCH OUT.onnx
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from features_peer import model  # noqa: E402


def main():
    arch, size, batch, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.manual_seed(0)
    m = model(arch).eval()
    x = torch.rand(batch, 3, size, size) * 2 - 1
    tmp = out + ".tmp"
    with torch.no_grad():
        torch.onnx.export(m, x, tmp, opset_version=13, input_names=["x"], output_names=["y"],
                          do_constant_folding=True)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
