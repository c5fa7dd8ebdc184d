#!/usr/bin/env bash
# The lesson's from-scratch CNN, one training step per batch of 32 at
# 150x150x3: graft against PyTorch from Debian in the same run.
# The peer at its best: OpenBLAS as the system BLAS (checked below), two
# threads, NCHW and channels_last; OpenBLAS 0.3.21 does not recognise this
# CPU model and falls back to SSE3 kernels, so the peer also runs with
# OPENBLAS_CORETYPE set to the best kernel that works here, and the faster
# figure counts. Peak memory: each process's max RSS. ISA=avx2: both capped at
# AVX2, graft built for AVX2.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/peer_env.sh
steps=${STEPS:-10}
coretypes="auto Haswell SkylakeX"
build=build arch=()
if [ "${ISA:-native}" = avx2 ]; then
    # graft built for AVX2 and both sides' oneDNN capped at AVX2
    build=build/avx2 arch=(ARCH="-mavx2 -mfma") coretypes="Haswell"
    export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
    echo "ISA capped at AVX2 for graft and PyTorch"
fi
make -s -j2 BUILD=$build "${arch[@]}" $build/bench/scratch_cnn
echo "system BLAS: $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
g=$(./$build/bench/scratch_cnn "$steps" 2)
echo "$g"
best=0 best_mem=0
for core in $coretypes; do
    [ "$core" = auto ] && core=""
    out=$(OPENBLAS_CORETYPE=$core $torch_py bench/scratch_cnn_peer.py "$steps" 2 2>/dev/null | tail -n 1) || continue
    echo "OPENBLAS_CORETYPE=${core:-auto}: $out"
    ips=$(echo "$out" | awk '{print $4}')
    mem=$(echo "$out" | awk '{print $6}')
    if awk -v a="$ips" -v b="$best" 'BEGIN{exit !(a>b)}'; then best=$ips best_mem=$mem; fi
done
gi=$(echo "$g" | awk '{print $3}')
gm=$(echo "$g" | awk '{print $5}')
awk -v g="$gi" -v t="$best" -v gm="$gm" -v tm="$best_mem" 'BEGIN{
  printf "scratch CNN training, batch 32: graft %.1f img/s, PyTorch best %.1f img/s, ratio %.2fx (target >= 1.5x)\n", g, t, g/t;
  printf "peak memory: graft %d MiB, PyTorch %d MiB, ratio %.2f (target < 1)\n", gm, tm, gm/tm }'
