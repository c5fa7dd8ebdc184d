#!/usr/bin/env bash
# Inference against ONNX Runtime, the engine deployers pick for CPUs: graft's
# zoo bases without top (random weights, frozen, inference mode) against
# onnxruntime-node 1.30.0 (js/node_modules; 2 intra-op threads, all graph
# optimisations, sequential execution) running ONNX exports of the same
# networks (bench/features_peer.py's, exported by torch.onnx.export from
# Debian's PyTorch into a cache folder, offline).
#
# graft's weights are promised constant (graft_model_set_weights_constant), as
# `graft predict` promises them and as ORT's session holds its own; CONSTANT=0
# measures without the promise.
# Per model: batch 32 at each SIZE (default "150 224") on THREADS (default 2)
# threads, and batch-1 latency at LATENCY_SIZE (224) on 1 and on 2 threads
# (LATENCY=0 skips it). Each measurement is a process timing its calls for
# SECONDS_PER_RUN (default 3) s and reporting the median call; its peak
# memory is /usr/bin/time's maximum RSS. ROUNDS (default 3) rounds alternate
# graft and ONNX Runtime (who goes first swaps every round); the table shows
# medians of the rounds' figures and the largest RSS.
# speed = ORT's time / graft's time per call: above 1, graft is faster
# (the targets: 1.2 for batch 32, 1.25 for batch 1, i.e. 0.8x ORT's latency).
# ARCHS picks the models; ISA=avx2 builds graft for AVX2 (build/avx2) and
# caps its oneDNN there. ONNX Runtime has no such switch: it keeps the
# CPU's widest kernels (AVX-512 where there is).
# INT8=1 runs graft's base in 8 bits (graft_model_quantize_int8, oneDNN's
# int8 primitives, calibrated on the timed batch) against ONNX Runtime in
# float: what a deployer gains by quantizing with graft, not a like-for-like
# comparison (ONNX Runtime's own int8 on the same quantized model:
# INT8=1 bench/bench_export_ort.sh).
# ONNX_CACHE (default ~/.cache/graft/onnx) holds the exports.
# cpu_ms: each side's CPU time per call (all its threads, spinning included),
# which a machine shared with other work inflates less than the wall clock.
# The last line: min ratio graft/onnxruntime: R (the lowest speed ratio).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_RUN:-3}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
archs=${ARCHS:-mobilenet mobilenet_v2 resnet50 vgg16}
sizes=${SIZE:-150 224}
batch=${BATCH:-32}
lat_size=${LATENCY_SIZE:-224}
cache=${ONNX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/graft/onnx}
build=build arch=()
if [ "${ISA:-native}" = avx2 ]; then build=build/avx2 arch=(ARCH="-mavx2 -mfma"); fi
make -s -j2 BUILD=$build "${arch[@]}" $build/bench/bench_inference
if [ "${ISA:-native}" = avx2 ]; then
    export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
    echo "graft capped at AVX2 (ONNX Runtime uses what the CPU has)"
fi
if [ ! -d js/node_modules/onnxruntime-node ]; then
    echo "bench_inference: js/node_modules/onnxruntime-node is missing (npm ci --ignore-scripts --prefix js)" >&2
    exit 1
fi
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One measurement: prints "MS RSS_MIB CPU_MS" (the median call, the peak
# memory, the CPU time per call).
measure() {
    local out
    out=$(/usr/bin/time -f "%M" -o "$tmp/rss" "$@" 2>"$tmp/err") || {
        echo "bench_inference: failed: $* ($(tail -n 2 "$tmp/err"))" >&2
        return 1
    }
    local last
    last=$(echo "$out" | tail -n 1)
    echo "$(echo "$last" | awk '{print $5}') $(awk '{printf "%.0f", $1 / 1024}' "$tmp/rss") $(echo "$last" | awk '{print $9}')"
}

onnx_file() { # arch size batch
    local f="$cache/$1_$2_b$3.onnx"
    if [ ! -s "$f" ]; then
        /usr/bin/python3 bench/inference_export.py "$1" "$2" "$3" "$f" >/dev/null 2>"$tmp/err" || {
            echo "bench_inference: exporting $1 at $2 failed: $(tail -n 1 "$tmp/err")" >&2
            return 1
        }
    fi
    echo "$f"
}

median() { sort -g | awk '{a[NR] = $1} END {print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
maxof() { sort -g | tail -n 1; }

node_rss=$(/usr/bin/time -f "%M" node -e "require('./js/node_modules/onnxruntime-node')" 2>&1 | tail -n 1)
echo "rounds $rounds x ${secs}s, median call; Node with onnxruntime-node loaded and idle: $((node_rss / 1024)) MiB RSS"
printf "%-13s %4s %5s %3s %10s %10s %10s %10s %6s %8s %8s %9s %9s\n" model size batch thr graft_ms ort_ms graft_img/s ort_img/s speed graft_MiB ort_MiB graft_cpu ort_cpu
min_ratio=""
run_case() { # arch size batch threads
    local a=$1 s=$2 b=$3 t=$4 f r g o
    f=$(onnx_file "$a" "$s" "$b")
    : >"$tmp/g"
    : >"$tmp/o"
    for ((r = 0; r < rounds; r++)); do
        if ((r % 2 == 0)); then
            measure ./$build/bench/bench_inference "$a" "$s" "$b" "$secs" "$t" >>"$tmp/g"
            measure node bench/inference_peer.js "$f" "$a" "$s" "$b" "$secs" "$t" >>"$tmp/o"
        else
            measure node bench/inference_peer.js "$f" "$a" "$s" "$b" "$secs" "$t" >>"$tmp/o"
            measure ./$build/bench/bench_inference "$a" "$s" "$b" "$secs" "$t" >>"$tmp/g"
        fi
    done
    g=$(awk '{print $1}' "$tmp/g" | median)
    o=$(awk '{print $1}' "$tmp/o" | median)
    local gm om gc oc ratio
    gc=$(awk '{print $3}' "$tmp/g" | median)
    oc=$(awk '{print $3}' "$tmp/o" | median)
    gm=$(awk '{print $2}' "$tmp/g" | maxof)
    om=$(awk '{print $2}' "$tmp/o" | maxof)
    ratio=$(awk -v g="$g" -v o="$o" 'BEGIN{printf "%.3f", o / g}')
    awk -v a="$a" -v s="$s" -v b="$b" -v t="$t" -v g="$g" -v o="$o" -v gm="$gm" -v om="$om" -v r="$ratio" \
        -v gc="$gc" -v oc="$oc" 'BEGIN{
        printf "%-13s %4d %5d %3d %10.2f %10.2f %10.1f %10.1f %5.2fx %8d %8d %9.2f %9.2f\n", a, s, b, t, g, o, 1e3 * b / g, 1e3 * b / o, r, gm, om, gc, oc }'
    if [ -z "$min_ratio" ] || awk -v a="$ratio" -v m="$min_ratio" 'BEGIN{exit !(a < m)}'; then min_ratio=$ratio; fi
}
for a in $archs; do
    for s in $sizes; do run_case "$a" "$s" "$batch" "$threads"; done
    if [ "${LATENCY:-1}" != 0 ]; then
        run_case "$a" "$lat_size" 1 1
        run_case "$a" "$lat_size" 1 2
    fi
done
echo "speed: ONNX Runtime's median call time / graft's; MiB: peak RSS of the process (ORT's includes Node's); cpu: CPU ms per call, medians"
if [ "${INT8:-0}" = 1 ]; then
    echo "min ratio graft int8/onnxruntime float: $min_ratio"
else
    echo "min ratio graft/onnxruntime: $min_ratio"
fi
