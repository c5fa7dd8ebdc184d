#!/usr/bin/env bash
# Flat memory over a long run: bench/soak.c trains a small CNN for EPOCHS
# (default 200) on 64 of the lesson's photos (linked into a temporary
# folder) with validation, a checkpoint and history.json every epoch, and
# prints the resident set size after each epoch and its growth after warm-up.
# Usage: bench/soak.sh [EPOCHS] [BUILD]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-200}
build=${2:-build}
data=${GRAFT_DATA:-$PWD/../shared/data/cats_and_dogs_filtered}
make -s BUILD="$build" "$build/bench/soak"
tmp=$(mktemp -d /tmp/graft_soak_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for cls in cats dogs; do
    mkdir -p "$tmp/data/$cls"
    for i in $(seq 0 31); do
        ln -s "$data/train/$cls/${cls%s}.$i.jpg" "$tmp/data/$cls/"
    done
done
mkdir -p "$tmp/out"
"$build/bench/soak" "$tmp/data" "$tmp/out" "$epochs"
