#!/usr/bin/python3
"""The peer of bench_data.c: torchvision ImageFolder + DataLoader (PIL),
the same pipeline (Resize 150x150, ToTensor = rescale 1/255, batches of 32,
shuffled) and, with augmentation, RandomAffine(40 degrees, shifts 0.2,
shear 0.2 degrees, zoom 0.8..1.2) + RandomHorizontalFlip.
usage: data_peer.py DIR WORKERS AUGMENT(0/1); prints images per second."""
import sys
import time

import torch
from torchvision import datasets, transforms


def main():
    root, workers, augment = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    steps = [transforms.Resize((150, 150))]
    if augment:
        steps += [transforms.RandomAffine(40, translate=(0.2, 0.2), scale=(0.8, 1.2), shear=0.2),
                  transforms.RandomHorizontalFlip()]
    steps.append(transforms.ToTensor())
    torch.manual_seed(1)
    t0 = time.perf_counter()
    ds = datasets.ImageFolder(root, transform=transforms.Compose(steps))
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers)
    n = 0
    for x, y in loader:
        n += x.shape[0]
    print("%.1f" % (n / (time.perf_counter() - t0)))


if __name__ == "__main__":
    main()
