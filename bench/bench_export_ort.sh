#!/usr/bin/env bash
# Inference at deployment: graft_model_predict against ONNX Runtime
# (onnxruntime-node from js/node_modules, 2 intra-op threads, all graph
# optimisations) running graft's own ONNX export of the same model, for
# MobileNet, MobileNetV2, ResNet50 and VGG16 (with their ImageNet tops) at
# 224x224, batch 1 (latency) and 32. In each round graft and ORT are timed
# one after the other; each figure is the median over ROUNDS (default 3) of
# per-call medians over SECONDS_PER_RUN (default 3) seconds.
# ARCHS (default all four) and THREADS (default 2) choose the models and threads.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_RUN:-3}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
archs=${ARCHS:-mobilenet mobilenet_v2 resnet50 vgg16}
if ! node -e "require('./js/node_modules/onnxruntime-node')" 2>/dev/null; then
    echo "bench_export_ort: node and js/node_modules/onnxruntime-node are needed (npm install --ignore-scripts in js/)" >&2
    exit 1
fi
make -s -j2 build/bench/bench_export_ort
tmp=$(mktemp -d /tmp/graft_bench_ort_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
echo "threads $threads (graft and ORT intra-op), $rounds rounds of ${secs}s, 224x224x3 NHWC input, models with their 1000-class tops"
for arch in $archs; do
    ./build/bench/bench_export_ort "$arch" "$tmp/$arch.onnx" "$secs" "$threads" "$rounds"
    rm -f "$tmp/$arch.onnx"
done
echo "graft/ORT speed > 1: graft is faster (ms are per call of the whole batch; batch 1 is the latency)."
