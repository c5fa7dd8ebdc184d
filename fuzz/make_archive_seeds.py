#!/usr/bin/python3
"""Seed archives for fuzz_archive (fuzz/corpus/fuzz_archive/): small zips and
tars, plain and gzipped, with what datasets hold (files, nested class folders)
and what hostile ones do (links inside and out, hard links, '..' and absolute
names, a FIFO, a device node, huge declared sizes). Deterministic.
Usage: fuzz/make_archive_seeds.py OUT_DIR"""
import gzip
import warnings
import io
import os
import sys
import tarfile
import time
import zipfile

warnings.simplefilter("ignore")  # zipfile warns of the duplicate names made on purpose
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
MTIME = 1700000000
PNG = bytes.fromhex(  # a 1x1 RGB PNG
    "89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
    "53de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082")


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT, gz=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mtime = MTIME
            ti.type = e.get("type", tarfile.REGTYPE)
            ti.mode = e.get("mode", 0o755 if ti.type == tarfile.DIRTYPE else 0o644)
            ti.linkname = e.get("link", "")
            data = e.get("data", b"")
            if ti.type == tarfile.REGTYPE:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                    ti.devmajor, ti.devminor = e.get("dev", (1, 3))
                t.addfile(ti)
    # Without tarfile's padding to 10 KiB records: the two zero blocks that end it.
    raw = buf.getvalue().rstrip(b"\0")
    raw += bytes(-len(raw) % 512 + 1024)
    if gz:
        return gzip.compress(raw, compresslevel=9, mtime=MTIME)
    return raw


def zip_bytes(entries, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for e in entries:
            zi = zipfile.ZipInfo(e["name"], date_time=time.gmtime(MTIME)[:6])
            zi.compress_type = method
            if e.get("link") is not None:
                zi.create_system = 3
                zi.external_attr = (0o120777 << 16)
                z.writestr(zi, e["link"])
            elif e["name"].endswith("/"):
                zi.external_attr = (0o40755 << 16) | 0x10
                z.writestr(zi, b"")
            else:
                zi.external_attr = 0o100644 << 16
                z.writestr(zi, e.get("data", b""))
    return buf.getvalue()


def put(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
dataset = [
    {"name": "data/", "type": D},
    {"name": "data/train/", "type": D},
    {"name": "data/train/cats/", "type": D},
    {"name": "data/train/cats/cat.0.png", "data": PNG},
    {"name": "data/train/dogs/dog.0.png", "data": PNG},
    {"name": "data/validation/cats/cat.1.png", "data": PNG},
    {"name": "data/empty.txt"},
]
put("dataset.tar", tar_bytes(dataset))
put("dataset.tar.gz", tar_bytes(dataset, gz=True))
put("dataset_gnu.tar", tar_bytes(dataset, fmt=tarfile.GNU_FORMAT))
put("dataset_ustar.tar", tar_bytes(dataset, fmt=tarfile.USTAR_FORMAT))
zdata = [{"name": e["name"].rstrip("/") + "/" if e.get("type") == D else e["name"],
          "data": e.get("data", b"")} for e in dataset]
put("dataset.zip", zip_bytes(zdata))
put("dataset_stored.zip", zip_bytes(zdata, method=zipfile.ZIP_STORED))

# Links that stay inside.
put("links_inside.tar", tar_bytes([
    {"name": "a/", "type": D},
    {"name": "a/x.png", "data": PNG},
    {"name": "a/link.png", "type": L, "link": "x.png"},
    {"name": "b/up.png", "type": L, "link": "../a/x.png"},
    {"name": "a/hard.png", "type": H, "link": "a/x.png"},
    {"name": "dirlink", "type": L, "link": "a"},
    {"name": "dangling", "type": L, "link": "nowhere/at/all"},
    {"name": "loop", "type": L, "link": "loop"},
]))
put("links_inside.zip", zip_bytes([
    {"name": "a/x.png", "data": PNG},
    {"name": "a/link.png", "link": "x.png"},
    {"name": "dirlink", "link": "a"},
]))
# Links out of the destination, and writes through them.
put("symlink_out_abs.tar", tar_bytes([
    {"name": "etc", "type": L, "link": "/etc"},
    {"name": "etc/evil", "data": b"x"},
]))
put("symlink_out_rel.tar", tar_bytes([
    {"name": "up", "type": L, "link": "../.."},
    {"name": "up/sentinel", "data": b"overwritten"},
]))
put("symlink_sentinel.tar", tar_bytes([
    {"name": "s", "type": L, "link": "../sentinel"},
    {"name": "s", "data": b"overwritten"},
]))
put("symlink_chain.tar", tar_bytes([
    {"name": "a/b/", "type": D},
    {"name": "a/b/c", "type": L, "link": "../.."},
    {"name": "a/d", "type": L, "link": "b/c/.."},
]))
put("symlink_out.zip", zip_bytes([
    {"name": "up", "link": "../sentinel"},
    {"name": "abs", "link": "/etc/passwd"},
    {"name": "up", "data": b"overwritten"},
]))
put("hardlink_out.tar", tar_bytes([
    {"name": "h", "type": H, "link": "../sentinel"},
    {"name": "h2", "type": H, "link": "../input.archive"},
    {"name": "h3", "type": H, "link": "/etc/hostname"},
]))
# A hard link entry carrying data writes into its target.
raw = bytearray(tar_bytes([{"name": "h", "type": H, "link": "../sentinel"}], fmt=tarfile.USTAR_FORMAT))
raw[124:136] = b"%011o\0" % 11
raw[148:156] = b"        "
raw[148:155] = b"%06o\0" % sum(raw[:512])
raw[512:512] = b"overwritten" + bytes(512 - 11)
put("hardlink_with_data.tar", bytes(raw))
# Names that climb out or start at the root.
put("dotdot.tar", tar_bytes([{"name": "../escaped", "data": b"x"}]))
put("dotdot_deep.tar", tar_bytes([{"name": "a/../../escaped", "data": b"x"}]))
put("absolute.tar", tar_bytes([{"name": "/tmp/graft_fuzz_escaped", "data": b"x"}],
                              fmt=tarfile.GNU_FORMAT))
put("dotdot.zip", zip_bytes([{"name": "../escaped", "data": b"x"}]))
put("absolute.zip", zip_bytes([{"name": "/tmp/graft_fuzz_escaped", "data": b"x"}]))
put("backslash.zip", zip_bytes([{"name": "..\\escaped", "data": b"x"}]))
# Special files and odd sizes.
put("fifo_device.tar", tar_bytes([
    {"name": "fifo", "type": tarfile.FIFOTYPE},
    {"name": "null", "type": tarfile.CHRTYPE, "dev": (1, 3)},
    {"name": "disk", "type": tarfile.BLKTYPE, "dev": (8, 0)},
]))
put("long_names.tar", tar_bytes([{"name": "d" * 120 + "/" + "f" * 150 + ".png", "data": PNG}]))
put("long_names_gnu.tar", tar_bytes([{"name": "d" * 120 + "/" + "f" * 150 + ".png", "data": PNG}],
                                    fmt=tarfile.GNU_FORMAT))
put("dir_then_file.tar", tar_bytes([
    {"name": "x/", "type": D},
    {"name": "x", "data": b"file over folder"},
    {"name": "y", "data": b"folder over file"},
    {"name": "y/z", "data": b"z"},
]))
put("modes.tar", tar_bytes([
    {"name": "locked/", "type": D, "mode": 0},
    {"name": "locked/f", "data": b"x", "mode": 0o4777},
]))
put("empty.tar", bytes(1024))
put("empty.zip", zip_bytes([]))
