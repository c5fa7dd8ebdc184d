"""Writes tests/fixtures/hostile_h5/: Keras weights-only files for a Dense(2)
layer named 'dense' on 2 inputs whose kernel or group reaches outside the
file (HDF5 external storage, external links, soft links, a virtual dataset),
and plain.h5, the same file without tricks. Run with Debian's python3-h5py:
    /usr/bin/python3 scripts/gen_fixtures_hostile_h5.py
"""
import os

import h5py
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hostile_h5")
KERNEL = np.array([[1, 2], [3, 4]], dtype=np.float32)
BIAS = np.array([0.5, -0.5], dtype=np.float32)


def keras_file(name, kernel=None, group=None, root_link=None):
    """kernel(group) creates the kernel dataset; group(f) the layer group."""
    with h5py.File(os.path.join(OUT, name), "w", libver="earliest") as f:
        f.attrs["layer_names"] = np.array([b"dense"])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.6"
        if group is not None:
            group(f)
            return
        g = f.create_group("dense")
        g.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
        inner = g.create_group("dense")
        if kernel is None:
            inner["kernel:0"] = KERNEL
        else:
            kernel(f, inner)
        inner["bias:0"] = BIAS


def external_storage(path):
    def make(f, inner):
        inner.create_dataset("kernel:0", shape=(2, 2), dtype="<f4", external=[(path, 0, 16)])
    return make


def external_link(f, inner):
    inner["kernel:0"] = h5py.ExternalLink("plain.h5", "/dense/dense/kernel:0")


def soft_link(f, inner):
    f.create_group("stash")["kernel"] = KERNEL * 100
    inner["kernel:0"] = h5py.SoftLink("/stash/kernel")


def group_external_link(f):
    f["dense"] = h5py.ExternalLink("plain.h5", "/dense")


def virtual(f, inner):
    layout = h5py.VirtualLayout(shape=(2, 2), dtype="<f4")
    layout[:] = h5py.VirtualSource("plain.h5", "/dense/dense/kernel:0", shape=(2, 2))
    inner.create_virtual_dataset("kernel:0", layout)


def main():
    os.makedirs(OUT, exist_ok=True)
    keras_file("plain.h5")
    with open(os.path.join(OUT, "secret.bin"), "wb") as f:
        f.write(np.arange(4, dtype=np.float32).tobytes() + b"not for graft")
    keras_file("external_storage.h5", kernel=external_storage("secret.bin"))
    keras_file("external_storage_abs.h5", kernel=external_storage("/etc/passwd"))
    keras_file("external_link.h5", kernel=external_link)
    keras_file("soft_link.h5", kernel=soft_link)
    keras_file("group_external_link.h5", group=group_external_link)
    keras_file("virtual.h5", kernel=virtual)


if __name__ == "__main__":
    main()
