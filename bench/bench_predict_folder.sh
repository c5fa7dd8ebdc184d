#!/usr/bin/env bash
# `graft predict` over a folder against ONNX Runtime (onnxruntime-node from
# js/node_modules, 2 intra-op threads, all graph optimisations) on graft's own
# ONNX export of the same model (issue 16). graft's figure is the whole
# command's wall time: start, reading the model, decoding and resizing every
# JPEG, preprocessing, inference and printing. ORT's is its inference alone
# (bench/ort_peer.js: the median batch of BATCH images, times the batches the
# folder fills), with decoding and resizing left out: a lower bound for any
# pipeline around it, so a ratio above 1 means graft's whole command beat
# ORT's inference by itself.
# MODEL (default the shared Keras MobileNet 0.75 in TF.js format, with its
# ImageNet top), DIR (default the lesson's 1000 validation images), BATCH
# (default 32), ROUNDS (default 3, alternating; medians), SECONDS_PER_RUN
# (default 3, ORT's timing) and THREADS (default 2, both sides).
# The last line: ratio graft/onnxruntime: R (ORT's seconds / graft's).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${MODEL:-../shared/models/mobilenet_v1_0.75_224/model.json}
dir=${DIR:-../shared/data/cats_and_dogs_filtered/validation}
batch=${BATCH:-32}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_RUN:-3}
threads=${THREADS:-2}
for need in "$model" "$dir"; do
    [ -e "$need" ] || { echo "bench_predict_folder: $need not found (MODEL=, DIR=)" >&2; exit 1; }
done
if ! node -e "require('./js/node_modules/onnxruntime-node')" 2>/dev/null; then
    echo "bench_predict_folder: node and js/node_modules/onnxruntime-node are needed (npm install --ignore-scripts in js/)" >&2
    exit 1
fi
make -s -j2 build/graft
tmp=$(mktemp -d /tmp/graft_bench_folder_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
build/graft export --format onnx "$model" "$tmp/model.onnx" --batch "$batch" > /dev/null
images=$(find "$dir" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | wc -l)
# graft predict takes folders' images, not their subfolders': each folder that holds some
mapfile -t folders < <(find "$dir" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) -printf '%h\n' | sort -u)
batches=$(( (images + batch - 1) / batch ))
echo "model $model, $images images in $dir, batches of $batch, $threads threads, $rounds rounds"
g=() o=()
for _ in $(seq "$rounds"); do
    t0=$(date +%s.%N)
    OMP_NUM_THREADS=$threads build/graft predict --model "$model" --top 1 --json "${folders[@]}" > "$tmp/predicted"
    t1=$(date +%s.%N)
    lines=$(grep -c "^{" "$tmp/predicted" || true)
    [ "$lines" -eq "$images" ] || { echo "bench_predict_folder: graft predict printed $lines lines for $images images" >&2; exit 1; }
    g+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
    ms=$(node bench/ort_peer.js "$tmp/model.onnx" "$batch" "$secs" "$threads")
    o+=("$(awk -v ms="$ms" -v n="$batches" 'BEGIN {print ms * n / 1000}')")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
gs=$(median "${g[@]}") os=$(median "${o[@]}")
awk -v g="$gs" -v o="$os" -v n="$images" 'BEGIN {
    printf "graft predict (whole command)  %8.2f s  %7.1f img/s\n", g, n / g
    printf "ORT inference alone            %8.2f s  %7.1f img/s\n", o, n / o
    printf "ratio graft/onnxruntime: %.2f\n", o / g
}'
