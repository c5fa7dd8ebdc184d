#!/usr/bin/env bash
# Inference at deployment: graft_model_predict against ONNX Runtime
# (onnxruntime-node from js/node_modules, 2 intra-op threads, all graph
# optimisations) running graft's own ONNX export of the same model, for
# MobileNet, MobileNetV2, ResNet50 and VGG16 (with their ImageNet tops) at
# 224x224, batch 1 (latency) and 32. In each round graft and ORT are timed
# one after the other; each figure is the median over ROUNDS (default 3) of
# per-call medians over SECONDS_PER_RUN (default 3) seconds.
# ARCHS (default all four) and THREADS (default 2) choose the models and threads.
# INT8=1: graft's base in 8 bits (graft_model_quantize_int8, calibrated on the
# 32 timed images) against ONNX Runtime on graft's QDQ export of that same
# quantized model (graft_onnx_opts.int8), the heads in float on both sides.
# Before timing, the nodes ONNX Runtime's optimised graph holds (written by
# its optimizedModelFilePath, counted with python3-onnx) show what it ran in
# int8 (QLinearConv) and what in float (Conv, FusedConv). The last line:
# min ratio graft int8/onnxruntime int8: R (the lowest speed ratio).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_RUN:-3}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
archs=${ARCHS:-mobilenet mobilenet_v2 resnet50 vgg16}
int8=${INT8:-0}
if ! node -e "require('./js/node_modules/onnxruntime-node')" 2>/dev/null; then
    echo "bench_export_ort: node and js/node_modules/onnxruntime-node are needed (npm install --ignore-scripts in js/)" >&2
    exit 1
fi
make -s -j2 build/bench/bench_export_ort
tmp=$(mktemp -d /tmp/graft_bench_ort_XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The op types of ONNX Runtime's optimised graph of $1 (its session as
# bench/ort_peer.js makes it), counted: "QLinearConv 27, ...".
ort_nodes() {
    node -e "
        const ort = require('./js/node_modules/onnxruntime-node');
        ort.InferenceSession.create(process.argv[1], {intraOpNumThreads: $threads, interOpNumThreads: 1,
            graphOptimizationLevel: 'all', optimizedModelFilePath: process.argv[2], logSeverityLevel: 3})
            .catch((e) => { console.error(e.message); process.exit(1); });" "$1" "$tmp/optimized.onnx" &&
        /usr/bin/python3 -c "
import collections, sys
import onnx
ops = collections.Counter(n.op_type for n in onnx.load(sys.argv[1]).graph.node)
print(', '.join('%s %d' % kv for kv in sorted(ops.items())))" "$tmp/optimized.onnx" ||
        echo "(not counted: python3-onnx is needed)"
    rm -f "$tmp/optimized.onnx"
}

tag=""
[ "$int8" = 1 ] && tag=" int8"
echo "threads $threads (graft and ORT intra-op), $rounds rounds of ${secs}s, 224x224x3 NHWC input, models with their 1000-class tops${tag:+, bases in int8 (QDQ export for ORT)}"
for arch in $archs; do
    if [ "$int8" = 1 ]; then
        # The export alone (no timing), for ORT's node counts.
        ./build/bench/bench_export_ort "$arch" "$tmp/$arch.onnx" 0 "$threads" 0
        echo "$arch: ONNX Runtime's optimised graph: $(ort_nodes "$tmp/$arch.onnx")"
    fi
    ./build/bench/bench_export_ort "$arch" "$tmp/$arch.onnx" "$secs" "$threads" "$rounds" | tee -a "$tmp/table"
    rm -f "$tmp/$arch.onnx"
done
echo "graft/ORT speed > 1: graft is faster (ms are per call of the whole batch; batch 1 is the latency)."
if [ "$int8" = 1 ]; then
    echo "min ratio graft int8/onnxruntime int8: $(awk '{print $(NF)}' "$tmp/table" | tr -d x | sort -g | head -1)"
fi
