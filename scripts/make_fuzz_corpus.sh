#!/usr/bin/env bash
# Regenerates the fuzz seed corpora in fuzz/corpus/<target>/ (small files,
# committed): files written by graft itself (fuzz/make_seeds.c), a Keras
# 2.0.4-style weights file written with h5py, model configs and model.json
# files from ../shared/models, three of the lesson's smallest JPEGs, and
# images in every format and pixel layout graft decodes, made with Pillow;
# archives (fuzz/make_archive_seeds.py), folder trees
# (fuzz/make_directory_seeds.py) and run folders made by `graft train`
# (fuzz/make_run_state_seeds.sh).
# Usage: scripts/make_fuzz_corpus.sh [BUILD]   (BUILD holds libgraft.a; default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
py=/usr/bin/python3
shared=../shared
out=fuzz/corpus
targets=(fuzz_keras_h5 fuzz_keras_config fuzz_tfjs fuzz_image fuzz_history fuzz_checkpoint fuzz_run_config
         fuzz_archive fuzz_directory fuzz_run_state)
for t in "${targets[@]}"; do mkdir -p "$out/$t"; done

make -s BUILD="$build" "$build/libgraft.a" "$build/graft"
mkdir -p "$build/fuzz"
cc -std=c11 -D_GNU_SOURCE -O1 -Iinclude -Isrc $(pkg-config --cflags hdf5-serial libcjson) \
    -o "$build/fuzz/make_seeds" fuzz/make_seeds.c "$build/libgraft.a" -fopenmp \
    $(pkg-config --libs hdf5-serial libcjson libpng cairo) -ldnnl -ljpeg -lcurl -lz -lm -lpthread
"$build/fuzz/make_seeds" "$out"

"$py" - "$out" "$shared" <<'PY'
import io, json, os, sys
import h5py, numpy as np
from PIL import Image

out, shared = sys.argv[1], sys.argv[2]

# Keras 2.0.4's weights-only layout: fixed-length byte-string attributes.
with h5py.File(os.path.join(out, "fuzz_keras_h5", "keras2_weights.h5"), "w") as f:
    f.attrs["layer_names"] = np.array([b"conv", b"dense"])
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"2.0.4"
    rng = np.random.RandomState(0)
    for layer, ws in (("conv", (("kernel:0", (3, 3, 3, 4)), ("bias:0", (4,)))),
                      ("dense", (("kernel:0", (4, 2)), ("bias:0", (2,))))):
        g = f.create_group(layer)
        g.attrs["weight_names"] = np.array([("%s/%s" % (layer, n)).encode() for n, _ in ws])
        for n, shape in ws:
            g.create_dataset("%s/%s" % (layer, n), data=rng.randn(*shape).astype("float32"))

# The same architectures with a sixteenth of the filters and units ("_narrow"):
# every layer kind and connection of the real ones, built in a fraction of the
# time (a MobileNet draws its 1.8M initial weights on every run).
def narrow(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if k in ("filters", "units") and isinstance(v, int):
                x[k] = max(1, v // 16)
            elif k == "target_shape" and isinstance(v, list):
                x[k] = [d // 16 if isinstance(d, int) and d >= 16 else d for d in v]
            else:
                narrow(v)
    elif isinstance(x, list):
        for v in x:
            narrow(v)

for name in ("mobilenet_v1_0.75_224", "teachable_machine_mobilenet_v2_0.35"):
    with open(os.path.join(shared, "models", name, "model.json"), "rb") as f:
        raw = f.read()
    doc = json.loads(raw)
    topo = doc["modelTopology"]
    topo = topo.get("model_config", topo)
    with open(os.path.join(out, "fuzz_keras_config", name + ".json"), "w") as f:
        json.dump(topo, f, separators=(",", ":"))
    narrow(topo)
    with open(os.path.join(out, "fuzz_keras_config", name + "_narrow.json"), "w") as f:
        json.dump(topo, f, separators=(",", ":"))
    if name.startswith("mobilenet"):
        with open(os.path.join(out, "fuzz_tfjs", name + ".json"), "wb") as f:
            f.write(raw)
        doc = json.loads(raw)
        narrow(doc["modelTopology"])
        with open(os.path.join(out, "fuzz_tfjs", name + "_narrow.json"), "w") as f:
            json.dump(doc, f, separators=(",", ":"))

rng = np.random.RandomState(1)
rgb = Image.fromarray(rng.randint(0, 256, (12, 10, 3), dtype=np.uint8))
img = os.path.join(out, "fuzz_image")
rgb.save(os.path.join(img, "rgb.png"))
rgb.convert("L").save(os.path.join(img, "gray.png"))
rgb.convert("RGBA").save(os.path.join(img, "rgba.png"))
rgb.convert("P", palette=Image.ADAPTIVE, colors=16).save(os.path.join(img, "palette.png"))
rgb.convert("LA").save(os.path.join(img, "gray_alpha.png"))
Image.fromarray((rng.randint(0, 65536, (6, 5))).astype(np.uint16)).save(os.path.join(img, "gray16.png"))
rgb.save(os.path.join(img, "interlaced.png"), interlace=1)
rgb.save(os.path.join(img, "rgb24.bmp"))
rgb.convert("P", palette=Image.ADAPTIVE, colors=16).save(os.path.join(img, "pal8.bmp"))
rgb.convert("1").save(os.path.join(img, "mono.bmp"))
rgb.convert("RGBA").save(os.path.join(img, "rgba32.bmp"))
rgb.save(os.path.join(img, "rgb.ppm"))
rgb.convert("L").save(os.path.join(img, "gray.pgm"))
with open(os.path.join(img, "ascii.ppm"), "w") as f:
    f.write("P3\n2 2\n255\n255 0 0 0 255 0\n0 0 255 9 9 9\n")
big = rgb.resize((40, 48))
big.save(os.path.join(img, "baseline.jpg"), quality=80)
big.save(os.path.join(img, "progressive.jpg"), quality=80, progressive=True)
big.convert("L").save(os.path.join(img, "gray.jpg"), quality=80)
big.convert("CMYK").save(os.path.join(img, "cmyk.jpg"), quality=80)
big.save(os.path.join(img, "subsampled.jpg"), quality=50, subsampling=2)
PY

for f in cat.596.jpg cat.485.jpg cat.183.jpg; do
    cp "$shared/data/cats_and_dogs_filtered/train/cats/$f" "$out/fuzz_image/lesson_$f"
done

# A Keras History dict without graft's own keys, and a run folder's config.json.
printf '{"history": {"loss": [0.7, 0.5], "acc": [0.5, 0.8], "val_loss": [0.6, null], "learning_rate": [0.001, 0.001]}}\n' \
    > "$out/fuzz_history/keras_history.json"
cat > "$out/fuzz_run_config/config.json" <<'JSON'
{"base": "mobilenet", "alpha": 0.75, "input_size": 160, "head": "dense1024",
 "weights": "../shared/models/mobilenet_v1_0.75_224/model.json",
 "train_dir": "data/train", "validation_dir": "data/validation", "preprocess": "model",
 "interpolation": "nearest", "batch_size": 32, "steps_per_epoch": 100, "validation_steps": 50,
 "augment": false, "no_feature_cache": false, "seed": 1, "n_base_layers": 87,
 "classes": ["cats", "dogs"], "stage": "fine-tune", "unfreeze": 20, "learning_rate": 1e-05,
 "target_epochs": 15}
JSON
"$py" fuzz/make_archive_seeds.py "$out/fuzz_archive"
"$py" fuzz/make_directory_seeds.py "$out/fuzz_directory"
fuzz/make_run_state_seeds.sh "$PWD/$build/graft" "$out/fuzz_run_state"
du -sh "$out"
for t in "${targets[@]}"; do echo "$t: $(ls "$out/$t" | wc -l) seeds"; done
