#!/usr/bin/python3
"""Reference fixtures for the TIFF, GIF and WebP decoders and for the
generator's fit (tests/test_data_formats.c). Run with Debian's
/usr/bin/python3 from the repository root:
    /usr/bin/python3 scripts/gen_fixtures_formats.py
It writes tests/fixtures/formats.bin (see scripts/fixture_io.py) and the
same image files as seeds for fuzz/fuzz_tiff.c, fuzz_gif.c and fuzz_webp.c
(fuzz/corpus/fuzz_<format>/).
References:
  - decoding: Pillow's open + convert("RGB" / "L" / "RGBA"), what Keras's
    load_img does, on small files made here (by Pillow where it writes the
    layout, by hand below where it does not) and embedded as byte arrays;
  - ImageDataGenerator.fit: Keras's computation transcribed in numpy
    (float64), scipy.linalg.svd replaced by numpy.linalg.svd.
Everything is deterministic (fixed seeds, no timestamps in the files).
"""
import io
import os
import struct
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from fixture_io import write_fixture  # noqa: E402

H, W = 11, 13


def encode(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


# ------------------------------------------------------------------- TIFF
def tiff(planes, bps, photometric, extra=None, colormap=None, planar=1, tile=None,
         big=False, w=W, h=H):
    """An uncompressed TIFF written field by field, for the layouts Pillow
    does not write. planes: an h x w x spp array of samples (ints)."""
    e = ">" if big else "<"
    spp = planes.shape[2]
    if bps == 16:
        samples = planes.astype(e + "u2")
    else:
        samples = planes.astype(np.uint8)

    def pack_rows(a):  # a: rows x cols x k samples, packed by bps
        if bps >= 8:
            return a.tobytes()
        out = b""
        per = 8 // bps
        for r in range(a.shape[0]):
            flat = a[r].reshape(-1)
            row = bytearray((len(flat) + per - 1) // per)
            for i, v in enumerate(flat):
                row[i // per] |= int(v) << (8 - bps * (i % per + 1))
            out += bytes(row)
        return out

    if tile:
        tw, th = tile
        chunks = []
        for ty in range(0, h, th):
            for tx in range(0, w, tw):
                t = np.zeros((th, tw, spp), samples.dtype)
                part = samples[ty:ty + th, tx:tx + tw]
                t[:part.shape[0], :part.shape[1]] = part
                chunks.append(pack_rows(t))
    elif planar == 2:
        chunks = [pack_rows(samples[:, :, k:k + 1]) for k in range(spp)]
    else:
        chunks = [pack_rows(samples)]
    data = b"".join(chunks)
    offsets, at = [], 8
    for c in chunks:
        offsets.append(at)
        at += len(c)
    entries = [(256, 4, [w]), (257, 4, [h]), (258, 3, [bps] * spp), (259, 3, [1]),
               (262, 3, [photometric]), (277, 3, [spp]), (284, 3, [planar])]
    if tile:
        entries += [(322, 3, [tile[0]]), (323, 3, [tile[1]]), (324, 4, offsets),
                    (325, 4, [len(c) for c in chunks])]
    else:
        entries += [(273, 4, offsets), (278, 4, [h]), (279, 4, [len(c) for c in chunks])]
    if colormap is not None:
        entries.append((320, 3, list(colormap)))
    if extra is not None:
        entries.append((338, 3, [extra]))
    entries.sort()
    ifd_at = at
    blob_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd, blobs = struct.pack(e + "H", len(entries)), b""
    for tag, typ, vals in entries:
        fmt = "H" if typ == 3 else "I"
        raw = struct.pack(e + fmt * len(vals), *vals)
        if len(raw) <= 4:
            ifd += struct.pack(e + "HHI", tag, typ, len(vals)) + raw.ljust(4, b"\0")
        else:
            ifd += struct.pack(e + "HHII", tag, typ, len(vals), blob_at + len(blobs))
            blobs += raw
    ifd += struct.pack(e + "I", 0)
    head = (b"MM\0*" if big else b"II*\0") + struct.pack(e + "I", ifd_at)
    return head + data + ifd + blobs


def tiff_files(rng):
    rgb = rng.randint(0, 256, (H, W, 3)).astype(np.uint8)
    alpha = rng.randint(0, 256, (H, W, 1)).astype(np.uint8)
    rgba = np.concatenate([rgb, alpha], 2)
    f = {}
    f["tif_rgb"] = encode(Image.fromarray(rgb), "TIFF")
    f["tif_rgb_lzw"] = encode(Image.fromarray(rgb), "TIFF", compression="tiff_lzw")
    f["tif_rgb_deflate"] = encode(Image.fromarray(rgb), "TIFF", compression="tiff_adobe_deflate")
    f["tif_rgb_packbits"] = encode(Image.fromarray(rgb), "TIFF", compression="packbits")
    f["tif_rgba_lzw"] = encode(Image.fromarray(rgba, "RGBA"), "TIFF", compression="tiff_lzw")
    f["tif_gray_deflate"] = encode(Image.fromarray(rgb[:, :, 0], "L"), "TIFF",
                                   compression="tiff_adobe_deflate")
    f["tif_1bit"] = encode(Image.fromarray(rgb[:, :, 1] > 127), "TIFF", compression="packbits")
    f["tif_palette"] = encode(Image.fromarray(rgb).quantize(16), "TIFF", compression="packbits")
    pages = [Image.fromarray(rgb[:, :, 2], "L"), Image.fromarray(rgb[::-1].copy())]
    f["tif_multipage"] = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:],
                                compression="tiff_lzw")
    r16 = rng.randint(0, 65536, (H, W, 3))
    f["tif_rgb16_be"] = tiff(r16, 16, 2, big=True)
    f["tif_rgba16"] = tiff(np.concatenate([r16, rng.randint(0, 65536, (H, W, 1))], 2), 16, 2,
                           extra=2)
    f["tif_la"] = tiff(np.concatenate([rgb[:, :, :1], alpha], 2), 8, 1, extra=2)
    f["tif_rgbx"] = tiff(rgba, 8, 2, extra=0)
    premul = rgba.astype(np.int64)
    premul[:, :, :3] = premul[:, :, :3] * premul[:, :, 3:] // 255
    f["tif_rgba_assoc"] = tiff(premul, 8, 2, extra=1)
    f["tif_miniswhite"] = tiff(rgb[:, :, :1], 8, 0)
    f["tif_gray4"] = tiff(rgb[:, :, :1] >> 4, 4, 1)
    f["tif_gray2_miniswhite"] = tiff(rgb[:, :, :1] >> 6, 2, 0)
    cmap16 = rng.randint(0, 65536, 3 * 16)
    f["tif_pal4"] = tiff(rgb[:, :, :1] >> 4, 4, 3, colormap=cmap16)
    f["tif_planar"] = tiff(rgb, 8, 2, planar=2)
    f["tif_tiled"] = tiff(rgb, 8, 2, tile=(16, 16))
    f["tif_tiled_gray16"] = tiff(r16[:, :, :1], 16, 1, tile=(16, 16), big=True)
    g16 = rng.randint(0, 65536, (H, W)).astype(np.uint16)
    f["tif_gray16"] = encode(Image.fromarray(g16), "TIFF", compression="tiff_lzw")
    return f


# -------------------------------------------------------------------- GIF
def gif_files(rng):
    rgb = rng.randint(0, 256, (H, W, 3)).astype(np.uint8)
    big = rng.randint(0, 256, (21, 19, 3)).astype(np.uint8)
    f = {}
    pal = Image.fromarray(rgb).quantize(16)
    f["gif_plain"] = encode(pal, "GIF")
    f["gif_trans"] = encode(pal, "GIF", transparency=3)
    f["gif_gray"] = encode(Image.fromarray(rgb[:, :, 0], "L"), "GIF")
    f["gif_interlaced"] = encode(Image.fromarray(big).quantize(64), "GIF", interlace=True)
    frames = [pal, Image.fromarray(rgb[::-1].copy()).quantize(16)]
    f["gif_anim"] = encode(frames[0], "GIF", save_all=True, append_images=frames[1:],
                           duration=100, loop=0)
    # The first frame offset inside a larger screen (and past its edge):
    # Pillow fills the rest with the transparent index, else index 0.
    for name, trans in (("gif_offset", None), ("gif_offset_trans", 5)):
        kw = {} if trans is None else {"transparency": trans}
        b = bytearray(encode(pal, "GIF", **kw))
        b[6:10] = struct.pack("<HH", W + 2, H - 3)  # the screen: wider, shorter than the frame
        at = b.index(b"\x2c", 13 + 3 * (2 << (b[10] & 7)) if b[10] & 0x80 else 13)
        b[at + 1:at + 5] = struct.pack("<HH", 3, 1)
        f[name] = bytes(b)
    f["gif_short_table"] = gif_short_table()
    return f


def gif_short_table():
    """A 4 x 3 GIF whose 2-colour table is shorter than its indices (0..3),
    LZW-coded by hand: a clear code before every pair of pixels keeps the
    codes 3 bits wide."""
    px = [0, 1, 2, 3, 3, 2, 1, 0, 1, 3, 0, 2]
    codes = []
    for i in range(0, len(px), 2):
        codes += [4] + px[i:i + 2]
    codes.append(5)
    bits, nbits, data = 0, 0, bytearray()
    for c in codes:
        bits |= c << nbits
        nbits += 3
        while nbits >= 8:
            data.append(bits & 255)
            bits >>= 8
            nbits -= 8
    if nbits:
        data.append(bits & 255)
    head = b"GIF89a" + struct.pack("<HHBBB", 4, 3, 0x80, 0, 0) + bytes([200, 10, 30, 20, 220, 90])
    desc = b"\x2c" + struct.pack("<HHHHB", 0, 0, 4, 3, 0) + bytes([2])
    return head + desc + bytes([len(data)]) + bytes(data) + b"\x00\x3b"


# ------------------------------------------------------------------- WebP
def webp_files(rng):
    y, x = np.mgrid[0:H, 0:W]
    smooth = np.stack([x * 19, y * 23, (x + y) * 9], 2).astype(np.uint8)
    noisy = rng.randint(0, 256, (H, W, 3)).astype(np.uint8)
    alpha = rng.randint(0, 256, (H, W, 1)).astype(np.uint8)
    rgba = np.concatenate([noisy, alpha], 2)
    return {
        "webp_lossless": encode(Image.fromarray(noisy), "WEBP", lossless=True),
        "webp_lossy": encode(Image.fromarray(smooth), "WEBP", quality=80),
        "webp_rgba_lossless": encode(Image.fromarray(rgba, "RGBA"), "WEBP", lossless=True),
        "webp_rgba_lossy": encode(Image.fromarray(rgba, "RGBA"), "WEBP", quality=90),
        # Animations: the first frame (Pillow's), opaque and with alpha.
        "webp_anim": encode(Image.fromarray(noisy), "WEBP", lossless=True, save_all=True,
                            append_images=[Image.fromarray(smooth)], duration=100),
        "webp_anim_rgba": encode(Image.fromarray(rgba, "RGBA"), "WEBP", quality=90, save_all=True,
                                 append_images=[Image.fromarray(noisy).convert("RGBA")],
                                 duration=100),
    }


def decode_cases(out, rng):
    files = {}
    files.update(tiff_files(rng))
    files.update(gif_files(rng))
    files.update(webp_files(rng))
    names = []
    for name, data in files.items():
        im = Image.open(io.BytesIO(data))
        out["file_" + name] = np.frombuffer(data, np.uint8)
        if im.mode in ("I;16", "I;16B"):
            # 16-bit gray: Pillow's convert clips every value above 255 (a
            # white image); graft keeps the high byte, as Pillow itself does
            # for 16-bit RGB and as graft's PNG reader does.
            hi = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
            out["pix_%s_l" % name] = hi
            out["pix_%s_rgb" % name] = np.repeat(hi[:, :, None], 3, 2)
            out["pix_%s_rgba" % name] = np.concatenate(
                [out["pix_%s_rgb" % name], np.full(hi.shape + (1,), 255, np.uint8)], 2)
        else:
            for mode in ("RGB", "L", "RGBA"):
                out["pix_%s_%s" % (name, mode.lower())] = np.asarray(im.convert(mode))
        names.append(name)
        seeds = os.path.join("fuzz", "corpus", "fuzz_" + name.split("_")[0].replace("tif", "tiff"))
        os.makedirs(seeds, exist_ok=True)
        with open(os.path.join(seeds, name), "wb") as f:
            f.write(data)
    out["names"] = np.frombuffer(" ".join(names).encode(), np.uint8)


# -------------------------------------------------------------------- fit
def keras_fit(x, rescale, center, std_norm, zca, zca_epsilon):
    """ImageDataGenerator.fit(x) with augment=False, in float64."""
    x = np.array(x, np.float64)
    if rescale:
        x *= rescale
    res = {}
    if center:
        res["mean"] = np.mean(x, axis=(0, 1, 2))
        x -= res["mean"]
    if std_norm:
        res["std"] = np.std(x, axis=(0, 1, 2))
        x /= res["std"] + 1e-6
    if zca:
        flat_x = np.reshape(x, (x.shape[0], x.shape[1] * x.shape[2] * x.shape[3]))
        sigma = np.dot(flat_x.T, flat_x) / flat_x.shape[0]
        u, s, _ = np.linalg.svd(sigma)
        s_inv = 1.0 / np.sqrt(s[np.newaxis] + zca_epsilon)
        res["pc"] = (u * s_inv).dot(u.T)
    return res


def fit_cases(out, rng):
    # Correlated pixels (a smooth field plus noise), so that sigma has a
    # spread of eigenvalues and whitening does something.
    n, h, w, c = 100, 3, 4, 3  # more images than values: sigma has full rank
    base = rng.randint(0, 256, (n, 1, 1, c)).astype(np.float64)
    field = np.cumsum(np.cumsum(rng.normal(0, 6, (n, h, w, c)), 1), 2)
    x = np.clip(np.round(base + field), 0, 255).astype(np.float32)
    out["fit_x"] = x
    r = keras_fit(x, 1 / 255.0, True, True, True, 1e-6)
    out["fit_mean"], out["fit_std"], out["fit_pc"] = r["mean"], r["std"], r["pc"]
    r = keras_fit(x, 0, False, False, True, 0.1)
    out["fit_pc_only"] = r["pc"]
    # What standardize then gives for the first image (rescale, centre,
    # normalise, whiten).
    x0 = x[0].astype(np.float64) / 255.0
    x0 = (x0 - out["fit_mean"]) / (out["fit_std"] + 1e-6)
    out["fit_standardized0"] = np.reshape(np.reshape(x0, (1, -1)).dot(out["fit_pc"]), x0.shape)


def main():
    rng = np.random.RandomState(20251203)
    out = {}
    decode_cases(out, rng)
    fit_cases(out, rng)
    path = os.path.join("tests", "fixtures", "formats.bin")
    write_fixture(path, out)
    print("wrote %s (%d arrays, %d bytes)" % (path, len(out), os.path.getsize(path)))


if __name__ == "__main__":
    main()
