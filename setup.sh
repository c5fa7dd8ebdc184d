#!/usr/bin/env bash
# Installs every Debian 12 package graft needs (build, tests, benchmarks'
# peers) and builds the library, the `graft` tool and the examples.
#   ./setup.sh            everything for development
#   ./setup.sh --runtime  only what running a built graft needs (the shared
#                         libraries it links, the ImageNet labels), no build
# Run as root (or with sudo) on a fresh machine; safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

runtime=(
    libjpeg62-turbo libpng16-16 libhdf5-103-1 libcjson1 libcurl4 libdnnl2 libcairo2
    libarchive13 libnettle8 libtiff6 libgif7 libwebp7 libwebpdemux2 liblapack3 libblas3 libgomp1
    darknet
)

install_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

case "${1:-}" in
--runtime)
    install_packages "${runtime[@]}"
    exit 0
    ;;
"") ;;
*)
    echo "usage: ./setup.sh [--runtime]" >&2
    exit 2
    ;;
esac

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

install_packages "${packages[@]}"

# ONNX Runtime and TensorFlow.js from npm: test oracles and benchmark peers
# for the exports (--ignore-scripts: the CPU runtime ships in the package;
# its install script only fetches a GPU build); sharp (libvips, in npm
# packages of its own) decodes images for the ONNX Runtime pipeline of
# bench/bench_predict_folder.sh.
if ! command -v npm >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
for need in onnxruntime-node @tensorflow/tfjs sharp; do
    if [ ! -d "js/node_modules/$need" ]; then
        npm ci --ignore-scripts --no-audit --no-fund --prefix js
        break
    fi
done

make -j"$(nproc)" WERROR=1 all
