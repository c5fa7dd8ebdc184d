"""Writes the fixture format that tests/fixture.h reads.

A fixture file is a sequence of records: u32 name length, the name (utf-8),
u32 rank, i32 dims[rank], then the float32 data in C order.
"""
import struct

import numpy as np


def write_fixture(path, arrays):
    """arrays: dict name -> array-like (converted to float32)."""
    with open(path, "wb") as f:
        for name, value in arrays.items():
            a = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
            raw = name.encode()
            f.write(struct.pack("<I", len(raw)))
            f.write(raw)
            f.write(struct.pack("<I", a.ndim))
            f.write(struct.pack("<%di" % a.ndim, *a.shape))
            f.write(a.tobytes())
