# Sourced by the benchmarks whose peer is PyTorch: $torch_py runs Debian's
# Python 3 with glibc's malloc keeping the memory it frees.
# PyTorch's CPU tensors come from malloc. By default glibc returns blocks
# above its mmap threshold (at most 32 MB) to the system when they are freed,
# and trims its heap, so each batch's activations are faulted in afresh. Where
# page faults are dear (a paravirtualised guest: docs/PERFORMANCE.md) that
# left the peer up to 4x below its best, and bimodal from run to run.
# PyTorch's CPU performance guide recommends an allocator that keeps memory
# (jemalloc, tcmalloc); glibc's own tunables do the same without one.
# graft runs as users run it: its arrays are planned once and reused.
torch_py="env MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 /usr/bin/python3"
