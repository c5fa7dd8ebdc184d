#!/usr/bin/env bash
# Data pipeline throughput: graft (2 workers) against torchvision's
# ImageFolder + DataLoader (2 workers, PIL), one pass over the lesson's 2000
# training images each, in the same run. Prints images per second (wall
# clock) and CPU milliseconds per image (user + system, workers included),
# which stays meaningful when other jobs share the cores.
# Then each format decoded alone (JPEG, PNG, TIFF, GIF, WebP, BMP, PPM), graft
# against Pillow. Run from the repository root; takes about a minute.
set -eu
dir=${1:-../shared/data/cats_and_dogs_filtered/train}
make -s build/bench/bench_data
bin=build/bench/bench_data
. bench/peer_env.sh
py=$torch_py
images=$(ls "$dir"/*/* | wc -l)
# Warm the page cache so neither side pays for the disk.
cat "$dir"/*/* > /dev/null

# run CMD...: prints "IMG_PER_S CPU_MS_PER_IMAGE"
run() {
    local out
    out=$( { /usr/bin/time -f "TIME %U %S" "$@" ; } 2>&1 )
    local rate cpu
    rate=$(printf '%s\n' "$out" | grep -v '^TIME' | tail -n 1)
    cpu=$(printf '%s\n' "$out" | awk '/^TIME/ {print $2 + $3}')
    echo "$rate $(echo "1000 * $cpu / $images" | bc -l)"
}

printf '%-26s %9s %9s %6s   %11s %11s %6s\n' pipeline "graft/s" "peer/s" ratio \
    "graft ms" "peer ms" ratio
for aug in 0 1; do
    read -r g gc <<< "$(run $bin "$dir" 2 $aug)"
    read -r p pc <<< "$(run timeout 100 $py bench/data_peer.py "$dir" 2 $aug)"
    name=$([ $aug = 1 ] && echo "decode+resize+augment" || echo "decode+resize")
    printf '%-26s %9.0f %9.0f %5.2fx   %11.3f %11.3f %5.2fx\n' "$name" "$g" "$p" \
        "$(echo "$g / $p" | bc -l)" "$gc" "$pc" "$(echo "$pc / $gc" | bc -l)"
done
read -r f fc <<< "$(run $bin "$dir" 2 0 1)"
printf '%-26s %9.0f %9s %6s   %11.3f\n' "graft, Keras-exact decode" "$f" - - "$fc"

# Decoding alone, per format: the same 100 lesson images written by Pillow in
# each format, decoded to RGB at full size by graft (bench_decode) and by
# Pillow's open + convert("RGB") (Keras's load_img), one thread each, in
# images per CPU second.
make -s build/bench/bench_decode
tmp=$(mktemp -d /tmp/graft_bench_formats.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
$py bench/decode_peer.py make "$(ls -d "$dir"/*/ | head -n 1)" "$tmp" 100
echo
printf '%-26s %9s %9s %6s\n' "decode to RGB (1 thread)" "graft" "Pillow" ratio
for fmt in jpeg png tiff gif webp bmp ppm; do
    g=$(build/bench/bench_decode "$tmp/$fmt")
    p=$($py bench/decode_peer.py pil "$tmp/$fmt")
    printf '%-26s %9.0f %9.0f %5.2fx\n' "$fmt" "$g" "$p" "$(echo "$g / $p" | bc -l)"
done
