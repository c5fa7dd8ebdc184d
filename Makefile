# graft: a static and a shared library, the `graft` tool, tests, benchmarks.
# `make` builds, `make test` runs the suite, `make asan` runs it under sanitizers.

PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
BUILD    ?= build
# The library's version from the header; the SONAME carries the major part
# (0.x releases: the minor too, as their ABI may change between them).
VERSION  := $(shell sed -n 's/.*GRAFT_VERSION "\(.*\)".*/\1/p' include/graft.h)
SOVER    := $(if $(filter 0.%,$(VERSION)),$(word 1,$(subst ., ,$(VERSION))).$(word 2,$(subst ., ,$(VERSION))),$(word 1,$(subst ., ,$(VERSION))))
SONAME   := libgraft.so.$(SOVER)
CC       ?= cc
PKGS      = hdf5-serial libcjson libpng cairo libarchive nettle libtiff-4 libwebp libwebpdemux lapack blas \
            libprotobuf-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT      ?= -O2
WARN      = -Wall -Wextra -Wshadow -Wno-unused-parameter
# Warnings are errors in CI (which sets CI=true) and with WERROR=1.
ifeq ($(CI),true)
WERROR   ?= 1
endif
ifeq ($(WERROR),1)
WARN     += -Werror
endif
CFLAGS   ?= -g
# Code for this machine's instruction set, as ggml and darknet build by
# default: the compiler's vectorised loops use AVX-512 where the CPU has it
# (docs/PERFORMANCE.md).
# ARCH="-mavx2 -mfma" builds for any AVX2 machine (the benchmarks' ISA=avx2).
ARCH     ?= -march=native
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -fopenmp $(ARCH) $(CFLAGS) \
             -Iinclude -Isrc $(PKG_CFLAGS) $(SAN)
LIBS      = $(PKG_LIBS) -ldnnl -ljpeg -lgif -lcurl -lz -lm -lpthread
# Data-parallel training over MPI (src/dist/, include/graft/mpi.h): built
# when Open MPI's compiler wrapper is found, or forced with MPI=1 / MPI=0.
MPI      ?= $(shell mpicc --showme:compile >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(MPI),1)
ALL_CFLAGS += -DGRAFT_MPI=1 $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags ompi-c)
LIBS     += $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs ompi-c)
endif
LDFLAGS  += -fopenmp $(SAN)

LIB_SRC  := $(sort $(wildcard src/*.c src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/onnx.pb-c.o
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(sort $(wildcard tools/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_REPLAY := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz-replay/%)

.PHONY: all lib tests test asan fuzz fuzz-build fuzz-bins fuzz-corpus bench examples install uninstall clean lint format
all: lib $(BUILD)/graft $(BENCH_BIN) $(EXAMPLE_BIN)
lib: $(BUILD)/libgraft.a $(BUILD)/libgraft.so

# The flags objects were built with: a change (ARCH, OPT, ...) rebuilds them.
FLAGS_STAMP := $(BUILD)/.cflags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(ALL_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(ALL_CFLAGS)' > $@
.PHONY: FORCE
FORCE:

$(BUILD)/%.o: %.c include/graft.h $(wildcard include/graft/*.h) src/internal.h $(wildcard src/*/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# sqrtf never sees a negative number in the optimizers' updates: without errno
# to set it vectorises (the same correctly rounded results).
$(BUILD)/src/train/optimizer.o: ALL_CFLAGS += -fno-math-errno
# FP exceptions never trap here; without this GCC will not if-convert the
# clamps of the exp family (activation.c) on AVX2, and the loops stay scalar.
$(BUILD)/src/core/activation.o: ALL_CFLAGS += -fno-trapping-math

# ONNX export writes its files through protobuf-c (a maintained C runtime,
# packaged by Debian): the ONNX schema src/export/onnx.proto is compiled by
# protoc-c into the build folder, and src/export sees the generated header.
$(BUILD)/gen/onnx.pb-c.c $(BUILD)/gen/onnx.pb-c.h &: src/export/onnx.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=src/export --c_out=$(BUILD)/gen src/export/onnx.proto
$(BUILD)/gen/onnx.pb-c.o: $(BUILD)/gen/onnx.pb-c.c $(FLAGS_STAMP)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
# (Named, not a pattern: a pattern rule without a recipe adds no
# prerequisite, and a serial build compiled onnx.c before the header existed.)
EXPORT_OBJ := $(filter $(BUILD)/src/export/%.o,$(LIB_OBJ))
$(EXPORT_OBJ): ALL_CFLAGS += -I$(BUILD)/gen
$(EXPORT_OBJ): $(BUILD)/gen/onnx.pb-c.h

$(BUILD)/libgraft.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# libgraft.so -> libgraft.so.SOVER (the SONAME) -> libgraft.so.VERSION.
$(BUILD)/libgraft.so: $(BUILD)/libgraft.so.$(VERSION)
	ln -sf libgraft.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

$(BUILD)/libgraft.so.$(VERSION): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(LDFLAGS) $(LIBS)

$(BUILD)/graft: $(TOOL_SRC) $(BUILD)/libgraft.a
	$(CC) $(ALL_CFLAGS) -o $@ $(TOOL_SRC) $(BUILD)/libgraft.a $(LDFLAGS) $(LIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libgraft.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(BUILD)/libgraft.a $(LDFLAGS) $(LIBS)

# The LD_PRELOAD shim that fails chosen writes (tests/shim/failwrite.c), for
# test_write_failures, which finds it beside itself.
$(BUILD)/tests/shim/failwrite.so: tests/shim/failwrite.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 $(WARN) -fPIC -shared -o $@ $<
$(BUILD)/tests/test_write_failures: $(BUILD)/tests/shim/failwrite.so

# The same tests at AVX2 (it includes the file).
$(BUILD)/tests/test_feature_cache_avx2: tests/test_feature_cache.c
$(BUILD)/tests/test_plan_inference_avx2: tests/test_plan_inference.c
$(BUILD)/tests/test_plan_shortcut_avx2: tests/test_plan_shortcut.c
$(BUILD)/tests/test_winograd_pool_avx2: tests/test_winograd_pool.c
# The tool's Ctrl-C handler, tested in-process (it includes the file).
$(BUILD)/tests/test_cli_special_files: tools/run.c tools/cli.h

$(BUILD)/bench/%: bench/%.c $(BUILD)/libgraft.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libgraft.a $(LDFLAGS) $(LIBS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libgraft.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libgraft.a $(LDFLAGS) $(LIBS)

examples: $(EXAMPLE_BIN)

# The suite's binaries. `make test` builds them on every core unless make was
# given its own -j: one at a time they took 7 of CI's minutes.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
tests: lib $(TEST_BIN) $(BUILD)/graft $(FUZZ_REPLAY)
	@:

test:
	@$(MAKE) --no-print-directory $(if $(findstring --jobserver,$(MAKEFLAGS)),,-j$(JOBS)) tests
	@tests/run.sh $(BUILD) $(TEST_BIN)

# AddressSanitizer + UBSan over the whole suite, in its own build folder.
asan:
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# libFuzzer targets (fuzz/fuzz_*.c) over a clang ASan+UBSan build in build-fuzz/,
# each run FUZZ_SECONDS from the seeds in fuzz/corpus/; fails on any finding.
FUZZ_SECONDS ?= 60
FUZZ_SAN  = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)

fuzz: fuzz-build
	scripts/run_fuzz.sh build-fuzz $(FUZZ_SECONDS)

# The sanitizers' reports need files and lines, not variables: line tables
# alone took this build from 13.3 to 9.2 CPU minutes (CI's longest phase).
FUZZ_DEBUG ?= -gline-tables-only
# (clang warns where an `omp simd` loop stays scalar: not an error for fuzzing.)
fuzz-build:
	$(MAKE) WERROR=0 BUILD=build-fuzz CC=clang OPT=-O1 CFLAGS="$(FUZZ_DEBUG)" SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" FUZZ_BUILD=1 fuzz-bins

# The 1x1 and depthwise kernels are built without instrumentation there:
# clang's ASan took 3-5 CPU minutes on each file's intrinsics (8 of the
# build's 9), and no fuzz target runs them (they parse, build and write
# back; only the CPU query graft_kernels_avx512 is called). The ASan+UBSan
# suite checks them.
ifeq ($(FUZZ_BUILD),1)
$(BUILD)/src/kernels/pointwise.o $(BUILD)/src/kernels/depthwise.o: override SAN =
endif

fuzz-bins: $(FUZZ_BIN)

# The run-folder reader lives in the tool: the fuzz_run_* targets link tools/run.c.
$(BUILD)/fuzz/%: fuzz/%.c $(wildcard fuzz/*.h) tools/cli.h tools/run.c $(BUILD)/libgraft.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -Itools -o $@ $< $(if $(filter fuzz_run_%,$*),tools/run.c) \
	    $(BUILD)/libgraft.a $(LDFLAGS) $(LIBS)

# The same targets built by the normal compiler around fuzz/replay.c (no
# libFuzzer): `make test` runs every committed corpus file through them.
$(BUILD)/fuzz-replay/%: fuzz/%.c fuzz/replay.c $(wildcard fuzz/*.h) tools/cli.h tools/run.c $(BUILD)/libgraft.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itools -o $@ fuzz/replay.c $< $(if $(filter fuzz_run_%,$*),tools/run.c) \
	    $(BUILD)/libgraft.a $(LDFLAGS) $(LIBS)

# Regenerates the seed corpora (small files, committed) from graft and Pillow.
fuzz-corpus: lib
	scripts/make_fuzz_corpus.sh $(BUILD)

# make install PREFIX=/usr DESTDIR=/tmp/pkg: the headers, both libraries (the
# shared one with its SONAME links), the tool and graft.pc; make uninstall
# removes exactly those files.
install: lib $(BUILD)/graft
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include/graft $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/graft.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/graft/*.h $(DESTDIR)$(PREFIX)/include/graft/
	install -m 644 $(BUILD)/libgraft.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libgraft.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libgraft.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libgraft.so
	install -m 755 $(BUILD)/graft $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@REQUIRES@|$(PKGS)|' graft.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/graft.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/graft.h $(addprefix $(DESTDIR)$(PREFIX)/include/graft/,$(notdir $(wildcard include/graft/*.h)))
	-rmdir $(DESTDIR)$(PREFIX)/include/graft 2>/dev/null
	rm -f $(DESTDIR)$(LIBDIR)/libgraft.a $(DESTDIR)$(LIBDIR)/libgraft.so $(DESTDIR)$(LIBDIR)/$(SONAME) \
	    $(DESTDIR)$(LIBDIR)/libgraft.so.$(VERSION) $(DESTDIR)$(LIBDIR)/pkgconfig/graft.pc $(DESTDIR)$(PREFIX)/bin/graft

# Static analysis: the import graph (scripts/import_graph.py), cppcheck and
# clang-tidy (checks in .clang-tidy); fails on any finding.
lint:
	scripts/lint.sh

format:
	clang-format -i include/*.h include/graft/*.h src/*.h src/*/*.c src/*/*.h tests/*.c tests/*.h tools/*.c

clean:
	rm -rf build build-asan build-fuzz
