#!/usr/bin/env bash
# make lint: the import graph (no include cycles, no arrow up the layering:
# scripts/import_graph.py), cppcheck over everything, then clang-tidy (checks
# in .clang-tidy) over the library and the tool, both cores at once. Fails on
# any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
/usr/bin/python3 scripts/import_graph.py
# src/export includes the header protoc-c generates from the ONNX schema.
make -s build/gen/onnx.pb-c.h
# -mavx2 -mfma: the SIMD kernels are analysed (the build targets the machine).
flags=(-std=c11 -D_GNU_SOURCE -mavx2 -mfma -Iinclude -Isrc -Ibuild/gen $(pkg-config --cflags hdf5-serial libcjson libpng cairo libarchive))
cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
    --suppress=missingIncludeSystem '-DcJSON_ArrayForEach(e,a)=for(e=(a)?(a)->child:0;e;e=e->next)' \
    -Iinclude -Isrc src tools
# One file per clang-tidy process: clang-tidy 14 carries va_list state from one
# translation unit to the next and then reports every later va_start/vsnprintf as
# uninitialized (llvm/llvm-project#40656, was bugs.llvm.org 41311).
files=$(ls src/*/*.c tools/*.c)
printf '%s\n' $files | xargs -P "$(nproc)" -n 1 sh -c \
    'clang-tidy --quiet --warnings-as-errors="*" "$@" -- '"${flags[*]}" _
echo "lint: clean"
