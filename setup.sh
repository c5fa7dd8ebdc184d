#!/usr/bin/env bash
# Installs every Debian 12 package graft needs (build, tests, benchmarks'
# peers) and builds the library, the `graft` tool and the examples.
# Run as root (or with sudo) on a fresh machine; safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

packages=(
    build-essential pkg-config
    libjpeg62-turbo-dev libpng-dev libhdf5-dev libcjson-dev libcurl4-openssl-dev
    libdnnl-dev libcairo2-dev libarchive-dev nettle-dev
    libtiff-dev libgif-dev libwebp-dev liblapack-dev libblas-dev
    # the ImageNet label lists and sample photos used by decode_predictions and tests
    darknet
    # test oracles and benchmark peers only (never needed at run time)
    python3-numpy python3-torch python3-torchvision python3-h5py python3-pil
    libopenblas0-pthread python3-onnx
    # MPI (graft's optional data-parallel training; built when found)
    openmpi-bin libopenmpi-dev
    # ONNX export: the ONNX schema compiled by protoc-c
    libprotobuf-c-dev protobuf-c-compiler
    # browser tests of the report and the exported web page
    chromium
    # make lint, make asan, make fuzz
    cppcheck clang clang-tidy valgrind
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime and TensorFlow.js from npm: test oracles and benchmark peers
# for the exports (--ignore-scripts: the CPU runtime ships in the package;
# its install script only fetches a GPU build).
if ! command -v npm >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
[ -d js/node_modules/onnxruntime-node ] && [ -d js/node_modules/@tensorflow/tfjs ] ||
    npm ci --ignore-scripts --no-audit --no-fund --prefix js

make -j"$(nproc)" WERROR=1 all
