#!/usr/bin/env bash
# Seeds for fuzz_run_state (fuzz/corpus/fuzz_run_state/): real run folders
# made by `graft train` (the lesson's CNN at 32x32 on three of the lesson's
# images per class, one epoch: two classes, and three), each joined into the
# target's format (config.json, history.json and the checkpoint without its
# weights; see fuzz/fuzz_run_state.c), plus the same without history.json.
# Usage: fuzz/make_run_state_seeds.sh GRAFT_BIN OUT_DIR   (needs ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
graft=$1
out=$2
lesson=../shared/data/cats_and_dogs_filtered/train
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out" "$tmp/two/cats" "$tmp/two/dogs" "$tmp/three"
for i in 0 1 2; do
    cp "$lesson/cats/cat.$i.jpg" "$tmp/two/cats/"
    cp "$lesson/dogs/dog.$i.jpg" "$tmp/two/dogs/"
done
cp -r "$tmp/two/cats" "$tmp/two/dogs" "$tmp/three/"
mkdir -p "$tmp/three/more_cats"
cp "$lesson/cats/cat.3.jpg" "$lesson/cats/cat.4.jpg" "$tmp/three/more_cats/"
for n in two three; do
    (cd "$tmp" && "$graft" train --data "$n" --base scratch --input-size 32 --epochs 1 --batch 2 \
        --seed 3 --out "run_$n" >/dev/null)
done
/usr/bin/python3 - "$tmp" "$out" <<'PY'
import os, struct, sys
tmp, out = sys.argv[1], sys.argv[2]
SEP = b"\n#graft-run-file#\n"
for n in ("two", "three"):
    run = os.path.join(tmp, "run_" + n)
    read = lambda f: open(os.path.join(run, f), "rb").read()
    cfg, hist, ck = read("config.json"), read("history.json"), read("checkpoint.graft")
    # magic, version, signature, then the number of weight floats: the weights,
    # and Adam's two moments, end the checkpoint before its CRC.
    nw = struct.unpack_from("<Q", ck, 8 + 4 + 8)[0]
    head = ck[:len(ck) - 4 - nw * 4 * 3]
    assert len(head) < 1024, len(head)
    open(os.path.join(out, "scratch_%s_classes" % n), "wb").write(cfg + SEP + hist + SEP + head)
    open(os.path.join(out, "scratch_%s_classes_no_history" % n), "wb").write(cfg + SEP + SEP + head)
PY
