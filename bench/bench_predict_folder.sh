#!/usr/bin/env bash
# `graft predict` over a folder against ONNX Runtime (onnxruntime-node from
# js/node_modules, 2 intra-op threads, all graph optimisations) on graft's own
# ONNX export of the same model (issue 16), two ways:
#  - the same job done with ORT: bench/ort_folder_peer.js, sharp (libvips,
#    from npm) decoding and resizing every image while ORT runs the batch
#    before, top classes printed; the whole command timed, as graft's is;
#  - ORT's inference alone (bench/ort_peer.js: the median batch of BATCH
#    images, times the batches the folder fills), with no decoding at all: a
#    lower bound for any pipeline around it.
# graft's figure is the whole command's wall time: start, reading the model,
# decoding and resizing every image, preprocessing, inference and printing.
# Models: ARCHS (mobilenet, mobilenet_v2, resnet50, vgg16: each built with its
# ImageNet top at 224x224, Keras's initial weights, saved as .h5 by
# bench/zoo_model.c), or else MODEL (default the shared Keras MobileNet 0.75
# in TF.js format, with its ImageNet top) with PREPROCESS (the peer's: tf,
# the default, caffe or torch). DIR (default the lesson's 1000 validation
# images), BATCH (default 32, both sides), ROUNDS (default 3, alternating;
# medians), SECONDS_PER_RUN (default 3, ORT's inference timing) and THREADS
# (default 2, both sides). ISA=avx2 builds graft for AVX2 (build/avx2,
# oneDNN capped at AVX2; ONNX Runtime and sharp use what the CPU has).
# INT8=DIR runs graft predict with --int8 DIR (the base in 8 bits, calibrated
# on 200 images of DIR, the calibration inside the timed command), against
# ONNX Runtime in float as before: not like for like (ORT's own int8 is not
# run here).
# Each model ends with two ratios (ORT's seconds / graft's), the pipeline's
# last; the last line is the smallest pipeline ratio over the models.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DIR:-../shared/data/cats_and_dogs_filtered/validation}
batch=${BATCH:-32}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_RUN:-3}
threads=${THREADS:-2}
[ -d "$dir" ] || { echo "bench_predict_folder: $dir not found (DIR=)" >&2; exit 1; }
if ! node -e "require('./js/node_modules/onnxruntime-node'); require('./js/node_modules/sharp')" 2>/dev/null; then
    echo "bench_predict_folder: node and js/node_modules/{onnxruntime-node,sharp} are needed (npm ci --ignore-scripts --prefix js)" >&2
    exit 1
fi
int8=()
if [ -n "${INT8:-}" ]; then
    [ -d "$INT8" ] || { echo "bench_predict_folder: INT8=$INT8 is not a folder" >&2; exit 1; }
    int8=(--int8 "$INT8")
    echo "graft predict --int8 $INT8 (8-bit base, calibration included); ONNX Runtime in float"
fi
build=build arch=()
if [ "${ISA:-native}" = avx2 ]; then
    build=build/avx2 arch=(ARCH="-mavx2 -mfma")
    export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
fi
make -s -j2 BUILD=$build "${arch[@]}" $build/graft $build/bench/zoo_model
tmp=$(mktemp -d /tmp/graft_bench_folder_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
images=$(find "$dir" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | wc -l)
# graft predict takes folders' images, not their subfolders': each folder that holds some
mapfile -t folders < <(find "$dir" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) -printf '%h\n' | sort -u)
find "$dir" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort > "$tmp/list"
batches=$(( (images + batch - 1) / batch ))
echo "$images images in $dir, batches of $batch, $threads threads, $rounds rounds, graft built for ${ISA:-native}"
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
ratios=()

# bench NAME MODEL PREPROCESS
bench() {
    local name=$1 model=$2 preprocess=$3 t0 t1 lines ms gs ps os
    local g=() p=() o=()
    [ -e "$model" ] || { echo "bench_predict_folder: $model not found (MODEL=)" >&2; exit 1; }
    "$build/graft" export --format onnx "$model" "$tmp/model.onnx" --batch "$batch" > /dev/null
    for _ in $(seq "$rounds"); do
        t0=$(date +%s.%N)
        OMP_NUM_THREADS=$threads "$build/graft" predict --model "$model" --top 1 --json "${int8[@]}" "${folders[@]}" > "$tmp/predicted"
        t1=$(date +%s.%N)
        lines=$(grep -c "^{" "$tmp/predicted" || true)
        [ "$lines" -eq "$images" ] || { echo "bench_predict_folder: graft predict printed $lines lines for $images images" >&2; exit 1; }
        g+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
        t0=$(date +%s.%N)
        node bench/ort_folder_peer.js "$tmp/model.onnx" "$batch" "$threads" "$preprocess" "$tmp/list" > "$tmp/peer"
        t1=$(date +%s.%N)
        lines=$(grep -c "^{" "$tmp/peer" || true)
        [ "$lines" -eq "$images" ] || { echo "bench_predict_folder: the ORT pipeline printed $lines lines for $images images" >&2; exit 1; }
        p+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
        ms=$(node bench/ort_peer.js "$tmp/model.onnx" "$batch" "$secs" "$threads")
        o+=("$(awk -v ms="$ms" -v n="$batches" 'BEGIN {print ms * n / 1000}')")
    done
    rm -f "$tmp/model.onnx"
    echo "== $name ($model, the peer's preprocessing $preprocess)"
    # The same job: the top classes agree but for images near a tie (sharp's
    # resize is not Pillow's, which graft matches).
    # shellcheck disable=SC2016 # JavaScript, not the shell's
    node -e '
const fs = require("fs"), top = (f) => new Map(fs.readFileSync(f, "utf8").trim().split("\n")
    .map((l) => JSON.parse(l)).map((r) => [r.image, r.top[0].index]));
const g = top(process.argv[1]), p = top(process.argv[2]);
let same = 0;
for (const [k, v] of g) same += p.get(k) === v;
console.log(`top class: graft and the ORT pipeline agree on ${same} of ${g.size} images`);
' "$tmp/predicted" "$tmp/peer"
    gs=$(median "${g[@]}") ps=$(median "${p[@]}") os=$(median "${o[@]}")
    awk -v g="$gs" -v p="$ps" -v o="$os" -v n="$images" 'BEGIN {
        printf "graft predict (whole command)         %8.2f s  %7.1f img/s\n", g, n / g
        printf "ORT + sharp pipeline (whole command)  %8.2f s  %7.1f img/s\n", p, n / p
        printf "ORT inference alone (no decoding)     %8.2f s  %7.1f img/s\n", o, n / o
        printf "ratio graft/onnxruntime inference alone: %.2f\n", o / g
        printf "ratio graft/onnxruntime pipeline: %.2f\n", p / g
    }'
    ratios+=("$(awk -v g="$gs" -v p="$ps" 'BEGIN {printf "%.2f", p / g}')")
}

if [ -n "${ARCHS:-}" ]; then
    for a in $ARCHS; do
        case $a in
        mobilenet | mobilenet_v2) pre=tf ;;
        resnet50 | vgg16) pre=caffe ;;
        *) echo "bench_predict_folder: ARCHS takes mobilenet, mobilenet_v2, resnet50 and vgg16, not $a" >&2; exit 2 ;;
        esac
        "$build/bench/zoo_model" "$a" 224 "$tmp/$a.h5"
        bench "$a" "$tmp/$a.h5" "$pre"
        rm -f "$tmp/$a.h5"
    done
else
    model=${MODEL:-../shared/models/mobilenet_v1_0.75_224/model.json}
    bench "$(basename "$(dirname "$model")")" "$model" "${PREPROCESS:-tf}"
fi
echo "min ratio graft/onnxruntime pipeline: $(printf '%s\n' "${ratios[@]}" | sort -g | head -1)"
