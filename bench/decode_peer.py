#!/usr/bin/python3
"""The peer of bench_decode.c, and the files both decode.
    decode_peer.py make SRC_DIR OUT_DIR N: the first N images of SRC_DIR
        (sorted) written by Pillow as JPEG (the originals, copied), PNG,
        TIFF (LZW), GIF (256-colour adaptive palette), WebP (lossy, quality
        80), BMP and PPM, into OUT_DIR/<format>/;
    decode_peer.py pil DIR: images per CPU second of Image.open +
        convert("RGB") (what Keras's load_img does) over DIR's files, one
        thread, passes repeated until a CPU second has gone by."""
import os
import shutil
import sys
import time

from PIL import Image

FORMATS = {
    "png": ("PNG", {}),
    "tiff": ("TIFF", {"compression": "tiff_lzw"}),
    "gif": ("GIF", {}),
    "webp": ("WEBP", {"quality": 80}),
    "bmp": ("BMP", {}),
    "ppm": ("PPM", {}),
}


def make(src, out, n):
    names = sorted(f for f in os.listdir(src) if not f.startswith("."))[:n]
    os.makedirs(os.path.join(out, "jpeg"), exist_ok=True)
    for fmt in FORMATS:
        os.makedirs(os.path.join(out, fmt), exist_ok=True)
    for name in names:
        stem = os.path.splitext(name)[0]
        shutil.copy(os.path.join(src, name), os.path.join(out, "jpeg", name))
        im = Image.open(os.path.join(src, name)).convert("RGB")
        for fmt, (kind, kw) in FORMATS.items():
            img = im.convert("P", palette=Image.ADAPTIVE) if fmt == "gif" else im
            img.save(os.path.join(out, fmt, stem + "." + fmt), kind, **kw)


def pil(d):
    paths = [os.path.join(d, f) for f in sorted(os.listdir(d)) if not f.startswith(".")]
    images, t0 = 0, time.process_time()
    while True:
        for p in paths:
            with Image.open(p) as im:
                im.convert("RGB")
        images += len(paths)
        dt = time.process_time() - t0
        if dt >= 1.0:
            break
    print("%.1f" % (images / dt))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        pil(sys.argv[2])
