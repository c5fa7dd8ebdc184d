#!/usr/bin/python3
"""Reference fixtures for the image data pipeline (tests/test_data_*.c).

Run with Debian's /usr/bin/python3 from the repository root:
    /usr/bin/python3 scripts/gen_fixtures_data.py
It writes tests/fixtures/data.bin (see scripts/fixture_io.py for the format).

References:
  - resizing: Pillow's Image.resize (what Keras's load_img calls);
  - decoding: Pillow's open + convert("RGB" / "L"), on small files made here
    and embedded in the fixture as byte arrays (and on three lesson JPEGs
    read in place from ../shared);
  - augmentation: Keras's apply_affine_transform matrix, resampled by a
    plain-loop numpy transcription of scipy.ndimage.affine_transform
    (order 0/1; scipy is not installed here), channel shift with numpy,
    brightness with PIL.ImageEnhance as Keras does.
Everything is deterministic (fixed seeds, no timestamps in the files).
"""
import io
import math
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, os.path.dirname(__file__))
from fixture_io import write_fixture  # noqa: E402

SHARED = os.path.join("..", "shared", "data", "cats_and_dogs_filtered")
REAL = ["train/cats/cat.0.jpg", "train/cats/cat.1.jpg", "train/dogs/dog.0.jpg"]

FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
    "lanczos": Image.LANCZOS,
}
SIZES = [(9, 11), (31, 40), (17, 10), (5, 23), (40, 7)]
MODES = ["nearest", "constant", "reflect", "wrap"]


# ----------------------------------------------------------------- resize

def resize_cases(out, src):
    out["src"] = src
    img = Image.fromarray(src)
    for name, f in FILTERS.items():
        for h, w in SIZES:
            out["resize_%s_%dx%d" % (name, h, w)] = np.asarray(img.resize((w, h), f))
    gray = Image.fromarray(src).convert("L")
    out["src_gray"] = np.asarray(gray)
    out["resize_gray_bilinear_9x11"] = np.asarray(gray.resize((11, 9), Image.BILINEAR))


# ---------------------------------------------------- Keras affine + scipy

def keras_matrix(theta, tx, ty, shear, zx, zy, h, w):
    """apply_affine_transform's matrix, as Keras builds it (row, col order
    after its swap); None when Keras would skip the resampling."""
    m = None
    if theta != 0:
        t = np.deg2rad(theta)
        m = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    if tx != 0 or ty != 0:
        s = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        m = s if m is None else np.dot(m, s)
    if shear != 0:
        sh = np.deg2rad(shear)
        s = np.array([[1, -np.sin(sh), 0], [0, np.cos(sh), 0], [0, 0, 1]])
        m = s if m is None else np.dot(m, s)
    if zx != 1 or zy != 1:
        z = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        m = z if m is None else np.dot(m, z)
    if m is None:
        return None
    ox, oy = float(h) / 2 - 0.5, float(w) / 2 - 0.5
    off = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]])
    reset = np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    m = np.dot(np.dot(off, m), reset)
    m[:, [0, 1]] = m[:, [1, 0]]
    m[[0, 1]] = m[[1, 0]]
    return m


def scipy_map(x, n, mode):
    """scipy.ndimage's boundary mapping of one coordinate; None: use cval."""
    if x < 0:
        if mode == "nearest":
            return 0.0
        if mode == "constant":
            return None
        if n <= 1:
            return 0.0
        if mode == "reflect":
            sz2 = 2 * n
            if x < -sz2:
                x = sz2 * int(-x / sz2) + x
            return x + sz2 if x < -n else -x - 1
        sz = n - 1  # wrap
        return x + sz * (int(-x / sz) + 1)
    if x > n - 1:
        if mode == "nearest":
            return float(n - 1)
        if mode == "constant":
            return None
        if n <= 1:
            return 0.0
        if mode == "reflect":
            sz2 = 2 * n
            x -= sz2 * int(x / sz2)
            return sz2 - x - 1 if x >= n else x
        sz = n - 1
        return x - sz * int(x / sz)
    return x


def scipy_mirror(i, n):
    if n <= 1:
        return 0
    s2 = 2 * n - 2
    if i < 0:
        i = s2 * int(-i / s2) + i
        return i + s2 if i <= 1 - n else -i
    if i >= n:
        i -= s2 * int(i / s2)
        return s2 - i if i >= n else i
    return i


def scipy_affine(img, m, mode, cval, order):
    h, w = img.shape
    out = np.zeros((h, w), np.float64)
    for r in range(h):
        for c in range(w):
            coords = [m[0, 0] * r + m[0, 1] * c + m[0, 2], m[1, 0] * r + m[1, 1] * c + m[1, 2]]
            taps = []
            for x, n in zip(coords, (h, w)):
                x = scipy_map(x, n, mode)
                if x is None or (x <= -1.0 and mode != "nearest"):
                    taps = None
                    break
                if order == 0:
                    taps.append([(scipy_mirror(int(math.floor(x + 0.5)), n), 1.0)])
                else:
                    s = int(math.floor(x))
                    f = x - math.floor(x)
                    taps.append([(scipy_mirror(s, n), 1.0 - f), (scipy_mirror(s + 1, n), f)])
            if taps is None:
                out[r, c] = cval
                continue
            v = 0.0
            for i, wi in taps[0]:
                for j, wj in taps[1]:
                    v += wi * wj * img[i, j]
            out[r, c] = v
    return out.astype(np.float32)


def keras_transform(x, p, mode, cval, order):
    theta, tx, ty, shear, zx, zy, fh, fv = p
    m = keras_matrix(theta, tx, ty, shear, zx, zy, x.shape[0], x.shape[1])
    if m is not None:
        x = np.stack([scipy_affine(x[:, :, k], m, mode, cval, order) for k in range(x.shape[2])], 2)
    if fh:
        x = x[:, ::-1]
    if fv:
        x = x[::-1]
    return np.ascontiguousarray(x)


def augment_cases(out, src):
    x = src.astype(np.float32)
    cases = {
        "rot": (17.0, 0, 0, 0, 1, 1, 0, 0),
        "shift": (0, 2.3, -4.6, 0, 1, 1, 0, 0),
        "zoom": (0, 0, 0, 0, 0.8, 1.3, 0, 0),
        "zoomout": (0, 0, 0, 0, 1.7, 1.45, 0, 0),
        "shear": (0, 0, 0, 25.0, 1, 1, 0, 0),
        "all": (-33.0, -3.1, 5.2, 12.0, 1.15, 0.9, 1, 0),
        "big": (140.0, 11.0, -19.0, 40.0, 2.2, 0.5, 0, 1),
        "hflip": (0, 0, 0, 0, 1, 1, 1, 0),
        "vflip": (0, 0, 0, 0, 1, 1, 0, 1),
    }
    n = 0
    for name, p in cases.items():
        for mi, mode in enumerate(MODES):
            for order in (1, 0):
                if order == 0 and name not in ("rot", "all"):
                    continue
                key = "aug%d" % n
                n += 1
                out[key + "_params"] = list(p) + [mi, 7.5, order]
                out[key] = keras_transform(x, p, mode, 7.5, order)
    # Channel shift: clip to the image's range (apply_channel_shift).
    out["chshift_params"] = [30.0, -45.0]
    out["chshift_a"] = np.clip(x + 30.0, x.min(), x.max())
    out["chshift_b"] = np.clip(x - 45.0, x.min(), x.max())
    # Brightness: array_to_img (uint8) -> ImageEnhance.Brightness -> array.
    out["bright_params"] = [0.7, 1.4]
    for k, b in (("a", 0.7), ("b", 1.4)):
        img = Image.fromarray(x.astype("uint8"), "RGB")
        out["bright_" + k] = np.asarray(ImageEnhance.Brightness(img).enhance(b), np.float32)


# ----------------------------------------------------------------- decoding

def png_chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png16(a):
    """A 16-bit RGB or gray PNG, written by hand (Pillow writes neither)."""
    h, w = a.shape[:2]
    ct = 2 if a.ndim == 3 else 0
    raw = b"".join(b"\0" + a[r].astype(">u2").tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ct, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9))
            + png_chunk(b"IEND", b""))


def encode(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def decode_cases(out, rng):
    h, w = 11, 13
    rgb = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    rgba = np.concatenate([rgb, rng.randint(0, 256, (h, w, 1)).astype(np.uint8)], 2)
    files = {}
    files["png_rgb"] = encode(Image.fromarray(rgb), "PNG")
    files["png_rgba"] = encode(Image.fromarray(rgba, "RGBA"), "PNG")
    files["png_la"] = encode(Image.fromarray(rgba[:, :, [0, 3]], "LA"), "PNG")
    files["png_gray"] = encode(Image.fromarray(rgb[:, :, 0], "L"), "PNG")
    files["png_1bit"] = encode(Image.fromarray(rgb[:, :, 0] > 127), "PNG")
    pal = Image.fromarray(rgb).quantize(16)
    files["png_palette"] = encode(pal, "PNG", transparency=3)
    files["png_rgb16"] = png16(rng.randint(0, 65536, (h, w, 3)))
    files["bmp_24"] = encode(Image.fromarray(rgb), "BMP")
    files["bmp_8"] = encode(pal, "BMP")
    files["bmp_1"] = encode(Image.fromarray(rgb[:, :, 1] > 100).convert("1"), "BMP")
    files["ppm_p6"] = encode(Image.fromarray(rgb), "PPM")
    files["ppm_p5"] = encode(Image.fromarray(rgb[:, :, 2], "L"), "PPM")
    files["jpeg_rgb"] = encode(Image.fromarray(rgb), "JPEG", quality=90)
    files["jpeg_gray"] = encode(Image.fromarray(rgb[:, :, 0], "L"), "JPEG", quality=90)
    files["jpeg_cmyk"] = encode(Image.fromarray(rgba, "CMYK"), "JPEG", quality=95)
    for name, data in files.items():
        im = Image.open(io.BytesIO(data))
        out["file_" + name] = np.frombuffer(data, np.uint8)
        out["pix_%s_rgb" % name] = np.asarray(im.convert("RGB"))
        out["pix_%s_l" % name] = np.asarray(im.convert("L"))
        if name in ("png_rgba", "png_la", "png_palette"):
            out["pix_%s_rgba" % name] = np.asarray(im.convert("RGBA"))
    # 16-bit gray: Pillow would clip at 255; graft keeps the high byte, as
    # Pillow itself does for 16-bit RGB. The reference is that byte.
    g16 = rng.randint(0, 65536, (h, w))
    out["file_png_gray16"] = np.frombuffer(png16(g16), np.uint8)
    out["pix_png_gray16_l"] = (g16 >> 8).astype(np.uint8)

    for k, rel in enumerate(REAL):
        im = Image.open(os.path.join(SHARED, rel))
        rgbim = im.convert("RGB")
        out["real%d_size" % k] = [im.size[1], im.size[0]]
        out["real%d_nearest" % k] = np.asarray(rgbim.resize((23, 17), Image.NEAREST))
        out["real%d_bilinear" % k] = np.asarray(rgbim.resize((23, 17), Image.BILINEAR))
        out["real%d_gray_nearest" % k] = np.asarray(im.convert("L").resize((23, 17), Image.NEAREST))
        out["real%d_150_nearest_sum" % k] = [float(np.asarray(rgbim.resize((150, 150), Image.NEAREST),
                                                             np.float64).sum())]


def resize_large_cases(out, rng):
    """Sources large enough for every path of the resizer (many taps, 16+
    rows, strips), its own seed so that the arrays above stay as they were."""
    src = rng.randint(0, 256, (61, 83, 3)).astype(np.uint8)
    out["src_large"] = src
    img = Image.fromarray(src)
    cases = [("bilinear", Image.BILINEAR, 29, 37), ("bilinear", Image.BILINEAR, 131, 97),
             ("bilinear", Image.BILINEAR, 61, 40), ("bilinear", Image.BILINEAR, 20, 83),
             ("bicubic", Image.BICUBIC, 29, 37), ("lanczos", Image.LANCZOS, 45, 120),
             ("box", Image.BOX, 7, 5)]
    for name, f, h, w in cases:
        out["large_%s_%dx%d" % (name, h, w)] = np.asarray(img.resize((w, h), f))
    gray = img.convert("L")
    out["src_large_gray"] = np.asarray(gray)
    out["large_gray_bilinear_29x37"] = np.asarray(gray.resize((37, 29), Image.BILINEAR))


def main():
    rng = np.random.RandomState(20240527)
    out = {}
    src = rng.randint(0, 256, (17, 23, 3)).astype(np.uint8)
    resize_cases(out, src)
    augment_cases(out, src)
    decode_cases(out, rng)
    resize_large_cases(out, np.random.RandomState(20261207))
    path = os.path.join("tests", "fixtures", "data.bin")
    write_fixture(path, out)
    print("wrote %s (%d arrays, %d bytes)" % (path, len(out), os.path.getsize(path)))


if __name__ == "__main__":
    main()
