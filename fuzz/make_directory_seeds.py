#!/usr/bin/python3
"""Seed trees for fuzz_directory (fuzz/corpus/fuzz_directory/), written in the
target's format (see fuzz/fuzz_directory.c): a dataset as Keras expects it,
and the same with links in and out, loops, hard links, FIFOs, odd names.
Deterministic. Usage: fuzz/make_directory_seeds.py OUT_DIR"""
import os
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
EXT = {"": 0, ".png": 1, ".jpg": 2, ".jpeg": 3, ".bmp": 4, ".ppm": 5, ".tif": 6, ".txt": 7}
PNG, GRAY, JPEG, BMP, PPM, EMPTY = 0, 1, 2, 3, 4, 7
# Folder indices: 0 is the root; then each folder op (and each linked folder,
# deep chain) in order.


def name(stem, ext=""):
    b = stem.encode() if isinstance(stem, str) else stem
    assert 1 <= len(b) <= 16
    return bytes([(EXT[ext] << 4) | (len(b) - 1)]) + b


def mkdir(parent, n):
    return bytes([0, parent]) + name(n)


def file(parent, n, ext, content):
    return bytes([1, parent]) + name(n, ext) + bytes([content])


def raw(parent, n, ext, data):
    assert len(data) % 2 == 0 and len(data) < 64
    return bytes([1, parent]) + name(n, ext) + bytes([5 | (len(data) // 2) << 3]) + data


def cut(parent, n, ext, eighths):
    return bytes([1, parent]) + name(n, ext) + bytes([6 | (eighths * 4) << 3])


def symlink(parent, n, ext, kind, arg=0):
    return bytes([2, parent]) + name(n, ext) + bytes([kind | arg << 3])


def hardlink(parent, n, ext, f):
    return bytes([3, parent]) + name(n, ext) + bytes([f])


def fifo(parent, n, ext):
    return bytes([4, parent]) + name(n, ext)


def special(parent, n, ext, which):
    return bytes([5, parent]) + name(n, ext) + bytes([which])


def deep(parent, depth):
    return bytes([6, parent, depth])


FOLLOW, GRAYSCALE, RGBA, VALIDATION, SPARSE, CLASSES, FULL, STRICT = 1, 2, 4, 8, 16, 32, 64, 128

dataset = (mkdir(0, "cats") + mkdir(0, "dogs") +
           file(1, "cat.0", ".jpg", JPEG) + file(1, "cat.1", ".png", PNG) +
           file(2, "dog.0", ".bmp", BMP) + file(2, "dog.1", ".ppm", PPM) +
           file(2, "dog.2", ".jpeg", GRAY) + file(0, "readme", ".txt", EMPTY))
seeds = {
    "dataset": bytes([0]) + dataset,
    "dataset_gray_strict": bytes([GRAYSCALE | STRICT | FULL]) + dataset,
    "dataset_rgba_split": bytes([RGBA | VALIDATION | SPARSE]) + dataset,
    "dataset_classes": bytes([CLASSES]) + dataset,
    "nested": bytes([FOLLOW]) + mkdir(0, "a") + mkdir(1, "inner") + mkdir(2, "deeper") +
    file(3, "x", ".png", PNG) + deep(1, 20) + file(4, "bottom", ".jpg", JPEG),
    "links_inside": bytes([FOLLOW]) + dataset + symlink(1, "to_dogs", "", 0, 2) +
    symlink(2, "to_cat", ".jpg", 1, 0) + symlink(1, "here", "", 2) + hardlink(2, "hard", ".png", 1),
    "links_loops": bytes([FOLLOW]) + dataset + symlink(1, "root", "", 3) + symlink(2, "self", ".png", 7) +
    symlink(1, "dot", "", 2) + symlink(0, "cls_link", "", 0, 1),
    "links_loops_nofollow": bytes([0]) + dataset + symlink(1, "root", "", 3) + symlink(2, "self", ".png", 7),
    "links_outside": bytes([FOLLOW]) + dataset + symlink(1, "out", "", 4) + symlink(2, "outsub", "", 4, 1) +
    symlink(1, "o", ".png", 5) + symlink(0, "outcls", "", 4),
    "dangling": bytes([FOLLOW | STRICT]) + dataset + symlink(1, "gone", ".png", 6) +
    symlink(2, "far", ".jpg", 6, 1),
    "bad_images": bytes([0]) + mkdir(0, "c") + raw(1, "junk", ".png", b"\x89PNG\r\n\x1a\n" + bytes(8)) +
    cut(1, "half", ".jpg", 4) + file(1, "empty", ".png", EMPTY) + raw(1, "text", ".jpg", b"not an image") +
    raw(1, "ppm", ".ppm", b"P6\n99999 99999\n255\n\0"),
    "bad_images_strict": bytes([STRICT]) + mkdir(0, "c") + cut(1, "half", ".jpg", 4) +
    file(1, "ok", ".png", PNG),
    "names": bytes([0]) + mkdir(0, b"\xff\xfe class") + mkdir(0, " ") + mkdir(0, "-") +
    file(1, b"\n\t\x01", ".png", PNG) + file(2, ".hidden", ".jpg", JPEG) + file(3, "UPPER", ".tif", PNG) +
    file(1, "noext", "", PNG) + file(2, b"\xc3\xa9t\xc3\xa9", ".png", GRAY),
    "fifos": bytes([FOLLOW]) + dataset + fifo(1, "pipe", ".png") + fifo(0, "rootpipe", "") +
    special(2, "zero", ".png", 0) + special(2, "null", ".jpg", 1) + special(1, "outpipe", ".png", 2),
    "fifo_class": bytes([0]) + fifo(0, "pipe_class", "") + mkdir(0, "c") + file(2, "x", ".png", PNG),
    "empty": bytes([0]),
    "empty_class": bytes([CLASSES]) + mkdir(0, "a") + mkdir(0, "b"),
}
for n, data in seeds.items():
    with open(os.path.join(out, n), "wb") as f:
        f.write(data)
