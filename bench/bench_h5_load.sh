#!/usr/bin/env bash
# graft_model_load of a .h5 through the child process that holds libhdf5
# (src/io/h5_child.c) against in-process reading (GRAFT_H5_CHILD=0),
# alternating: VGG16 with top (553 MB of weights) and a chain of many small
# layers. Prints medians and the ratio child / in-process.
# Run from the repository root: bench/bench_h5_load.sh [ARCH [LAYERS [ROUNDS]]]
set -eu
make -s build/bench/bench_h5_load
build/bench/bench_h5_load "$@"
