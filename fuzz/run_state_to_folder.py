#!/usr/bin/python3
"""Turns a fuzz_run_state input into a run folder that `graft resume` can be
pointed at: config.json, history.json and checkpoint.graft, the checkpoint's
weights and Adam moments appended as zeros (as many as the checkpoint's own
header says) and its CRC-32 set, as the target does (fuzz/fuzz_run_state.c).
Usage: fuzz/run_state_to_folder.py INPUT RUN_DIR"""
import os
import struct
import sys
import zlib

SEP = b"\n#graft-run-file#\n"
data = open(sys.argv[1], "rb").read()
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
parts = data.split(SEP, 2)
for name, part in zip(("config.json", "history.json", "checkpoint.graft"), parts):
    if not part:
        continue
    if name == "checkpoint.graft":
        # magic (8), version (4), model signature (8), then the weight floats (8)
        nw = struct.unpack_from("<Q", part, 20)[0] if len(part) >= 28 else 0
        part = part + bytes(min(nw, 1 << 28) * 4 * 3)
        part += struct.pack("<I", zlib.crc32(part) & 0xFFFFFFFF)
    with open(os.path.join(out, name), "wb") as f:
        f.write(part)
