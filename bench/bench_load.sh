#!/usr/bin/env bash
# Model loading time against the number of layers (1k, 10k and 100k, graft's
# limit): a Keras config built in order and listed in reverse, and the same
# model saved as .h5 and loaded back. Linear loading keeps "load us/layer"
# flat; most of the .h5 time is libhdf5's, per group and dataset.
# Run from the repository root; takes about a minute.
set -eu
make -s build/bench/bench_load
if [ $# -eq 0 ]; then set -- 1000 10000 100000; fi
build/bench/bench_load "$@"
