#!/usr/bin/python3
"""A Keras weights-only HDF5 file as Keras 2.0 saved Keras Applications' own
(inception_v3_weights_tf_dim_ordering_tf_kernels[_notop].h5), for
tests/test_zoo_load.c.

Reads IN, a weights-only file in today's automatic names (conv2d, conv2d_1,
batch_normalization, ...: 0-based, the first without a number), and writes
OUT with the same layers in the same order under Keras 2.0's names (conv2d_1,
conv2d_2, ...: 1-based), every value of weight w of a layer set to
100 * n + w, where n is the number in the layer's Keras 2.0 name (0 for names
Keras chose by hand: mixed0, predictions). Root attributes as Keras 2.0
wrote them: layer_names (every layer, weights or not), backend, keras_version.

usage: keras20_names.py IN OUT
"""
import re
import sys

import h5py
import numpy as np

AUTO = ("conv2d", "batch_normalization", "activation", "max_pooling2d",
        "average_pooling2d", "concatenate", "dense", "dropout", "add")


def keras20(name):
    """Today's automatic name -> Keras 2.0's, and that name's number."""
    m = re.fullmatch(r"(%s)(?:_(\d+))?" % "|".join(AUTO), name)
    if not m:
        return name, 0
    n = int(m.group(2) or 0) + 1
    return "%s_%d" % (m.group(1), n), n


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w") as out:
        names = [n.decode() if isinstance(n, bytes) else n for n in src.attrs["layer_names"]]
        new_names = []
        for name in names:
            new, n = keras20(name)
            new_names.append(new.encode())
            grp = out.create_group(new)
            old = src[name]
            wnames = [w.decode() if isinstance(w, bytes) else w for w in old.attrs["weight_names"]]
            new_w = []
            for i, w in enumerate(wnames):
                short = w.split("/")[-1]
                data = np.full(old[w].shape, 100.0 * n + i, np.float32)
                path = "%s/%s" % (new, short)
                grp.create_dataset(path, data=data)
                new_w.append(path.encode())
            grp.attrs["weight_names"] = np.array(new_w, dtype="S")
        out.attrs["layer_names"] = np.array(new_names, dtype="S")
        out.attrs["backend"] = b"tensorflow"
        out.attrs["keras_version"] = b"2.0.8"


if __name__ == "__main__":
    main()
