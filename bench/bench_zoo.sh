#!/usr/bin/env bash
# The zoo's bases against PyTorch from Debian, in the same run, alternating:
#   features  frozen feature extraction, batch 32, 150x150 (or the model's
#             minimum where that is larger), inference mode;
#   finetune  the top block and a new head train (Adam, batch 32), the rest
#             frozen; graft without its feature cache.
# The peer at its best: two threads, eval + inference_mode / no_grad for the
# frozen part, NCHW or channels_last (the faster), malloc keeping its memory
# (bench/peer_env.sh). Each figure is the median
# of ROUNDS (default 3) alternating measurements of SECONDS_PER_RUN (default 3).
# ARCHS picks the bases (default: all 24 that issue 14 added), MODES the modes.
# ISA=avx2 builds graft for AVX2 (build/avx2) and caps both graft's and
# PyTorch's oneDNN at AVX2 (ONEDNN_MAX_CPU_ISA), OpenBLAS at its Haswell
# kernels: the project's reference machine is AVX2+FMA only.
# GFLOP/s count direct convolution's multiply-adds (x2) per image; fine-tuning
# adds twice the trained layers' forward count for their backward pass.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/peer_env.sh
secs=${SECONDS_PER_RUN:-3}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
archs=${ARCHS:-VGG19 ResNet101 ResNet152 ResNet50V2 ResNet101V2 ResNet152V2 DenseNet121 DenseNet169 DenseNet201 InceptionV3 Xception EfficientNetB0 EfficientNetB1 EfficientNetB2 EfficientNetB3 EfficientNetB4 EfficientNetB5 EfficientNetB6 EfficientNetB7 MobileNetV3Small MobileNetV3Large ConvNeXtTiny ConvNeXtSmall ConvNeXtBase}
modes=${MODES:-features finetune}
build=build arch=()
if [ "${ISA:-native}" = avx2 ]; then
    build=build/avx2 arch=(ARCH="-mavx2 -mfma")
    export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell
    echo "ISA capped at AVX2 for graft and PyTorch"
fi
make -s -j2 BUILD=$build "${arch[@]}" $build/bench/bench_features
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf "%-14s %-9s %5s %11s %11s %7s %10s %10s\n" model mode side graft_img/s torch_img/s ratio graft_GF/s torch_GF/s
for arch in $archs; do
    for mode in $modes; do
        g_all="" t_all="" fpi="" side="" name="" how=""
        for ((r = 0; r < rounds; r++)); do
            g=$(./$build/bench/bench_features "$arch" "$secs" "$threads" "$mode")
            name=$(echo "$g" | awk '{print $2}')
            fpi=$(echo "$g" | awk '{print $7}')
            side=$(echo "$g" | awk '{print $8}')
            g_all="$g_all $(echo "$g" | awk '{print $3}')"
            t=$($torch_py bench/features_peer.py "$name" "$secs" "$threads" "$mode" "$side" 2>/dev/null | tail -n 1)
            t_all="$t_all $(echo "$t" | awk '{print $3}')"
            how=$(echo "$t" | awk '{print $5}')
        done
        gi=$(echo $g_all | tr ' ' '\n' | median)
        ti=$(echo $t_all | tr ' ' '\n' | median)
        awk -v a="$arch" -v m="$mode" -v s="$side" -v g="$gi" -v t="$ti" -v f="$fpi" -v h="$how" 'BEGIN{
            printf "%-14s %-9s %5d %11.2f %11.2f %6.2fx %10.1f %10.1f  (peer %s)\n", a, m, s, g, t, g/t, g*f/1e9, t*f/1e9, h }'
    done
done
