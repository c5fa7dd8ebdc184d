#!/usr/bin/env bash
# The whole lesson (shared/lesson/lesson27_transfer_learning.md), timed end to
# end: `graft lesson` with feature caching (its default) and with --no-cache
# (Keras's way: the frozen base recomputed every step), and the same lesson
# in PyTorch from Debian (bench/lesson_peer.py: same data, sizes, epochs,
# steps and models, random base weights), in the same run. Prints each
# stage's seconds, the totals, the ratios graft/peer and graft's best
# validation accuracies per stage, at 150x150 and (graft only unless
# PEER_224=1) at 224x224.
#
# The peer at its best: two threads, each stage in its faster layout (NCHW or
# channels_last) and OpenBLAS under the faster OPENBLAS_CORETYPE (0.3.21 does
# not recognise this CPU and otherwise uses SSE3 kernels), both chosen by
# timing training steps of each stage's model on a synthetic batch first.
#
# Environment:
#   SKIP_NOCACHE=1   no `graft lesson --no-cache`
#   SKIP_224=1       nothing at 224x224
#   SKIP_PEER=1      no PyTorch peer
#   PEER_224=1       the peer at 224x224 too
#   NOCACHE_TRANSFER_ONLY=1  the --no-cache figures from `graft train --no-cache`
#                    + `graft finetune` (stages 1 and 2, seconds from their
#                    history.json) and stage 3 from the cached run: the scratch
#                    CNN has no frozen layer, so caching never applies to it
#   PEER_STEPS=N     peer epochs of N steps and N/2 validation steps instead of
#                    100 and 50; its seconds are then scaled by 100/N and
#                    marked "extrapolated"
#   CORETYPES="auto Haswell SkylakeX"   the OpenBLAS core types tried
#   ISA=avx2         caps graft's and PyTorch's oneDNN at AVX2 (ONEDNN_MAX_CPU_ISA)
#                    and OpenBLAS at Haswell, and builds graft for AVX2 (build/avx2,
#                    ARCH="-mavx2 -mfma"): the project's reference machine is
#                    AVX2+FMA only, while some machines this runs on have AVX-512
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/peer_env.sh
py=$torch_py
build=build arch=()
if [ "${ISA:-native}" = avx2 ]; then build=build/avx2 arch=(ARCH="-mavx2 -mfma"); fi
make -s -j2 BUILD=$build "${arch[@]}" $build/graft
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
peer_steps=${PEER_STEPS:-100}
peer_vsteps=$(( peer_steps / 2 > 0 ? peer_steps / 2 : 1 ))

load() { cut -d' ' -f1-3 /proc/loadavg; }
if [ "${ISA:-native}" = avx2 ]; then
    export ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2
    CORETYPES=${CORETYPES:-Haswell}
    echo "ISA capped at AVX2 for graft and PyTorch"
fi
echo "system BLAS: $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3); $(nproc) cores"
echo "load average at start: $(load)"

# Wall and CPU (user + sys, children included) seconds of a command, in $tmp/LABEL.time.
timed() {
    local label=$1
    shift
    /usr/bin/time -o "$tmp/$label.time" -f "%e %U %S" "$@"
}

# graft LABEL ARGS...: runs the lesson, leaves its JSON line plus wall and CPU time in $tmp/LABEL.json.
graft_run() {
    local label=$1
    shift
    local l0
    l0=$(load)
    if ! timed "$label" $build/graft lesson --out "$tmp/$label" --json "$@" > "$tmp/$label.log" 2>&1; then
        tail -n 20 "$tmp/$label.log"
        echo "graft lesson $* failed" >&2
        exit 1
    fi
    grep '^{' "$tmp/$label.log" | tail -n 1 |
        $py -c 'import json,sys; j=json.load(sys.stdin); t=sys.argv[1].split(); j["wall"]=float(t[0]); j["cpu"]=float(t[1])+float(t[2]); j["load"]=[sys.argv[2], sys.argv[3]]; print(json.dumps(j))' \
            "$(tail -n 1 "$tmp/$label.time")" "$l0" "$(load)" > "$tmp/$label.json"
    echo "graft lesson $*: done, $(cat "$tmp/$label.json")"
}

# graft_nocache_transfer LABEL CACHED_LABEL ARGS...: stages 1 and 2 with --no-cache
# through `graft train` + `graft finetune`, stage 3 from CACHED_LABEL's run.
graft_nocache_transfer() {
    local label=$1 cached=$2
    shift 2
    local l0 data=../shared/data/cats_and_dogs_filtered
    l0=$(load)
    if ! { timed "$label.1" $build/graft train --data "$data" --base mobilenet --out "$tmp/$label" --epochs 5 \
               --steps-per-epoch 100 --validation-steps 50 --no-cache "$@" &&
           timed "$label.2" $build/graft finetune "$tmp/$label" --unfreeze 20 --lr 1e-5 --epochs 10; } \
             > "$tmp/$label.log" 2>&1; then
        tail -n 20 "$tmp/$label.log"
        echo "graft train/finetune --no-cache $* failed" >&2
        exit 1
    fi
    $py - "$tmp" "$label" "$cached" "$l0" "$(load)" > "$tmp/$label.json" <<'PY'
import json, os, sys
tmp, label, cached, l0, l1 = sys.argv[1:]
h = json.load(open(os.path.join(tmp, label, "history.json")))
c = json.load(open(os.path.join(tmp, cached + ".json")))
sec, acc = h["seconds"], h["history"]["val_accuracy"]
t = [[float(v) for v in open(os.path.join(tmp, "%s.%d.time" % (label, k))).read().split()[-3:]] for k in (1, 2)]
# Stage 3 is the cached run's (no frozen layer: nothing is cached there); its
# share of that run's wall and CPU time is taken in proportion to its fit seconds.
share = c["seconds"][2] / sum(c["seconds"])
print(json.dumps({"frozen_val_accuracy": max(acc[:5]), "finetune_val_accuracy": max(acc[5:]),
                  "scratch_val_accuracy": c["scratch_val_accuracy"],
                  "seconds": [sum(sec[:5]), sum(sec[5:]), c["seconds"][2]],
                  "wall": t[0][0] + t[1][0] + share * c["wall"],
                  "cpu": t[0][1] + t[0][2] + t[1][1] + t[1][2] + share * c["cpu"],
                  "load": [l0, l1], "stage3_from_cached_run": True}))
PY
    echo "graft --no-cache stages 1-2 $*: done, $(cat "$tmp/$label.json")"
}

nocache_run() {
    if [ "${NOCACHE_TRANSFER_ONLY:-0}" = 1 ]; then graft_nocache_transfer "$@"; else
        local label=$1
        shift 2
        graft_run "$label" --no-cache "$@"
    fi
}

# peer LABEL SIZE: calibrates, then runs the peer's lesson; $tmp/LABEL.json.
peer_run() {
    local label=$1 size=$2 core best_core="" best_t="" layouts="" c
    for core in ${CORETYPES:-auto Haswell SkylakeX}; do
        if [ "$core" = auto ]; then
            c=$(env -u OPENBLAS_CORETYPE $py bench/lesson_peer.py calibrate --size "$size" | tail -n 1)
        else
            c=$(OPENBLAS_CORETYPE=$core $py bench/lesson_peer.py calibrate --size "$size" | tail -n 1)
        fi
        # Predicted seconds of the peer's training steps: 5 + 10 + 10 epochs of 100 steps.
        read -r t lay < <($py -c '
import json, sys
c = json.loads(sys.argv[1])
epochs = {"frozen": 5, "finetune": 10, "scratch": 10}
best = {s: min(c[s], key=c[s].get) for s in c}
print(sum(100 * epochs[s] * c[s][best[s]] for s in c), ",".join(best[s] for s in ("frozen", "finetune", "scratch")))
for s in c:
    print("  %-8s" % s, "  ".join("%s %.3f s/step" % kv for kv in c[s].items()), file=sys.stderr)
' "$c")
        echo "peer calibration, OPENBLAS_CORETYPE=$core: training steps alone about ${t%.*} s, layouts $lay"
        if [ -z "$best_t" ] || awk -v a="$t" -v b="$best_t" 'BEGIN{exit !(a<b)}'; then
            best_t=$t best_core=$core layouts=$lay
        fi
    done
    echo "peer: OPENBLAS_CORETYPE=$best_core, layouts $layouts, $peer_steps steps and $peer_vsteps validation steps per epoch"
    local l0
    l0=$(load)
    if [ "$best_core" = auto ]; then
        timed "$label" env -u OPENBLAS_CORETYPE $py bench/lesson_peer.py run --size "$size" --layouts "$layouts" \
            --steps "$peer_steps" --val-steps "$peer_vsteps" > "$tmp/$label.log" 2>&1
    else
        OPENBLAS_CORETYPE=$best_core timed "$label" $py bench/lesson_peer.py run --size "$size" --layouts "$layouts" \
            --steps "$peer_steps" --val-steps "$peer_vsteps" > "$tmp/$label.log" 2>&1
    fi
    grep '^{' "$tmp/$label.log" | tail -n 1 |
        $py -c 'import json,sys; j=json.load(sys.stdin); t=sys.argv[1].split(); j["wall_outside"]=float(t[0]); j["cpu"]=float(t[1])+float(t[2]); j["load"]=[sys.argv[2], sys.argv[3]]; j["coretype"]=sys.argv[4]; print(json.dumps(j))' \
            "$(tail -n 1 "$tmp/$label.time")" "$l0" "$(load)" "$best_core" > "$tmp/$label.json"
    echo "peer lesson at $size: done, $(cat "$tmp/$label.json")"
}

graft_run g150
[ "${SKIP_PEER:-0}" = 1 ] || peer_run p150 150
[ "${SKIP_NOCACHE:-0}" = 1 ] || nocache_run g150_nocache g150
if [ "${SKIP_224:-0}" != 1 ]; then
    graft_run g224 --input-size 224
    [ "${SKIP_NOCACHE:-0}" = 1 ] || nocache_run g224_nocache g224 --input-size 224
    [ "${SKIP_PEER:-0}" = 1 ] || [ "${PEER_224:-0}" != 1 ] || peer_run p224 224
fi
echo "load average at the end: $(load)"

$py - "$tmp" <<'EOF'
import json, os, sys
tmp = sys.argv[1]
def get(label):
    p = os.path.join(tmp, label + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
stages = ("frozen + head (5 ep)", "fine-tune last 20 (10 ep)", "CNN from scratch (10 ep)")
for size in (150, 224):
    g, gn, p = get("g%d" % size), get("g%d_nocache" % size), get("p%d" % size)
    if not g:
        continue
    scale, note = 1.0, ""
    if p and p["steps"] < 100:
        scale = 100.0 / p["steps"]
        note = " (extrapolated x%.1f from %d steps/epoch)" % (scale, p["steps"])
    print("\n== %dx%d: seconds per stage (fit: training + validation steps)%s" % (size, size, note))
    print("%-28s %10s %10s %10s %10s %10s" % ("stage", "graft", "no-cache", "peer", "peer/graft", "peer/nocache"))
    print("(ratios: the peer's seconds over graft's, i.e. how many times faster graft is)")
    cols = [g["seconds"], gn["seconds"] if gn else None, [s * scale for s in p["seconds"]] if p else None]
    def fmt(v):
        return "%10.1f" % v if v is not None else "%10s" % "-"
    def ratio(a, b):
        return "%9.2fx" % (a / b) if a is not None and b else "%10s" % "-"
    rows = [(stages[i], [c[i] if c else None for c in cols]) for i in range(3)]
    rows.append(("total (fit)", [sum(c) if c else None for c in cols]))
    # The peer's start-up (imports, loaders) is not scaled, only its fit; its
    # CPU time is scaled as its wall time is.
    pw = p["wall_outside"] + (scale - 1) * p["total_fit"] if p else None
    pc = p["cpu"] * pw / p["wall_outside"] if p else None
    rows.append(("end to end (process wall)", [g["wall"], gn["wall"] if gn else None, pw]))
    rows.append(("CPU seconds (user + sys)", [g["cpu"], gn["cpu"] if gn else None, pc]))
    for name, (a, b, c) in rows:
        print("%-28s %s %s %s %s %s" % (name, fmt(a), fmt(b), fmt(c), ratio(c, a), ratio(c, b)))
    print("graft best val_accuracy: frozen %.4f (target >= 0.92), fine-tuned %.4f (>= 0.95), scratch %.4f (~0.65-0.75)"
          % (g["frozen_val_accuracy"], g["finetune_val_accuracy"], g["scratch_val_accuracy"]))
    if gn:
        print("graft --no-cache best val_accuracy: frozen %.4f, fine-tuned %.4f, scratch %.4f"
              % (gn["frozen_val_accuracy"], gn["finetune_val_accuracy"], gn["scratch_val_accuracy"]))
    if p:
        print("peer: OPENBLAS_CORETYPE=%s, layouts %s, %d threads; val_accuracy %s (random base weights: meaningless)"
              % (p["coretype"], ",".join(p["layouts"]), p["threads"], " ".join("%.3f" % a for a in p["val_accuracy"])))
        w = pw
        print("end-to-end ratio peer/graft: %.2fx with caching (target >= 5x), %s without; in CPU time %.2fx and %s"
              % (w / g["wall"], "%.2fx" % (w / gn["wall"]) if gn else "-",
                 pc / g["cpu"], "%.2fx" % (pc / gn["cpu"]) if gn else "-"))
    if gn and gn.get("stage3_from_cached_run"):
        print("(--no-cache: stages 1-2 from graft train/finetune --no-cache, stage 3 from the cached run)")
    for lab, j in (("graft", g), ("graft --no-cache", gn), ("peer", p)):
        if j:
            print("load average during %s: %s -> %s" % (lab, j["load"][0], j["load"][1]))
EOF
