#!/usr/bin/env bash
# Frozen feature extraction (forward only, inference mode, batch 32,
# 150x150x3, no top): graft against PyTorch from Debian in the same run, for
# MobileNet 1.0, MobileNetV2 1.0, ResNet50 and VGG16. The peer at its best:
# two threads, eval + inference_mode, NCHW or channels_last (the faster), and
# OpenBLAS under each OPENBLAS_CORETYPE that works here (0.3.21 does not
# recognise this CPU and otherwise falls back to SSE3 kernels).
# SECONDS_PER_RUN (default 3) is the timed span of each measurement.
# ARCHS (default all four) picks the models.
# ISA=avx2 builds graft for AVX2 (build/avx2) and caps both graft's and PyTorch's oneDNN at AVX2 (ONEDNN_MAX_CPU_ISA)
# and OpenBLAS at its Haswell kernels: the project's reference machine is
# AVX2+FMA only, while some machines this runs on have AVX-512.
# GFLOP/s count direct convolution's multiply-adds; graft's Winograd 3x3
# convolutions do fewer, so its figure can pass the FMA peak.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/peer_env.sh
secs=${SECONDS_PER_RUN:-3}
threads=${THREADS:-2}
archs=${ARCHS:-mobilenet mobilenet_v2 resnet50 vgg16}
coretypes=${CORETYPES:-"auto Haswell SkylakeX"}
build=build arch=()
if [ "${ISA:-native}" = avx2 ]; then build=build/avx2 arch=(ARCH="-mavx2 -mfma"); fi
make -s -j2 BUILD=$build "${arch[@]}" $build/bench/bench_features
echo "system BLAS: $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
# The reference machine's measured AVX2 FMA peak: about 90 GFLOP/s per core;
# twice that where AVX-512 is used.
per_core=90
if [ "${ISA:-native}" = avx2 ]; then
    export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
    coretypes="Haswell"
    echo "ISA capped at AVX2 for graft and PyTorch"
elif grep -qw avx512f /proc/cpuinfo; then
    per_core=180
    echo "this CPU has AVX-512: both sides use it (ISA=avx2 to cap them)"
fi
peak=${PEAK_GFLOPS:-$((per_core * threads))}
echo "threads $threads: FMA peak about $peak GFLOP/s"
printf "%-13s %10s %10s %7s %10s %10s %6s\n" model graft_img/s torch_img/s ratio graft_GF/s torch_GF/s %peak
for arch in $archs; do
    g=$(./$build/bench/bench_features "$arch" "$secs" "$threads")
    gi=$(echo "$g" | awk '{print $3}')
    fpi=$(echo "$g" | awk '{print $7}')
    best=0 how=""
    for core in $coretypes; do
        [ "$core" = auto ] && core=""
        out=$(OPENBLAS_CORETYPE=$core $torch_py bench/features_peer.py "$arch" "$secs" "$threads" 2>/dev/null | tail -n 1) || continue
        ips=$(echo "$out" | awk '{print $3}')
        if awk -v a="$ips" -v b="$best" 'BEGIN{exit !(a>b)}'; then best=$ips how="${core:-auto}/$(echo "$out" | awk '{print $5}')"; fi
    done
    awk -v a="$arch" -v g="$gi" -v t="$best" -v f="$fpi" -v p="$peak" 'BEGIN{
        printf "%-13s %10.1f %10.1f %6.2fx %10.1f %10.1f %5.0f%%\n", a, g, t, g/t, g*f/1e9, t*f/1e9, 100*g*f/1e9/p }'
    echo "  (peer best: OPENBLAS_CORETYPE/layout $how)"
done
echo "GFLOP/s count graft's per-image multiply-adds x2 for both (torchvision's ResNet50 strides its 3x3, not its 1x1, so it does a little more work than counted)."
