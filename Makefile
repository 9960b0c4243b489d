# UltraShard build. One static library per layer, one executable, unit tests.
# New .c files are picked up by wildcard: kernels/*.c -> libus_kernels.a,
# coordinator/ROOM/*.c -> libus_ROOM.a (cli/main.c is the executable's main).
# Unit tests: tests/unit/test_*.c -> $(B)/tests/test_* (cmocka).

B        ?= build
CC       ?= gcc
PKGS     := ompi-c libfabric libprotobuf-c openblas libcjson
IS_CLANG := $(findstring clang,$(shell $(CC) --version 2>/dev/null | head -1))
# OpenBLAS built on OpenMP (libopenblas-openmp-dev, deploy/setup.sh): its
# threads are the same libgomp team as our parallel loops, so a sgemm and
# the loop after it do not leave two pools spinning against each other on a
# small box. The rpath makes the loader take it over the system default
# (alternatives: the pthread build). Not with clang: its -fopenmp runtime is
# libomp, and libomp + libgomp in one process livelocked (test_model spun);
# clang builds and machines without the package get pkg-config's (pthread).
BLAS_OMP := /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_PC  := $(if $(IS_CLANG),,$(if $(wildcard $(BLAS_OMP)/pkgconfig/openblas.pc),PKG_CONFIG_PATH=$(BLAS_OMP)/pkgconfig))
PKG_CFLAGS := $(shell $(BLAS_PC) pkg-config --cflags $(PKGS))
BLAS_RPATH := -Wl,-rpath,$(BLAS_OMP)
PKG_LIBS   := $(shell $(BLAS_PC) pkg-config --libs $(PKGS)) $(if $(BLAS_PC),$(BLAS_RPATH))
OPT      ?= -O2 -march=x86-64-v2 -mtune=generic
SAN      ?=
CFLAGS   := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -fopenmp \
            -I. -I$(B)/gen $(PKG_CFLAGS) $(SAN) $(EXTRA_CFLAGS)
# clang reports "#pragma omp simd" loops it could not vectorize as warnings
# (outer loops with an inner reduction); they are hints, not errors.
ifneq ($(IS_CLANG),)
CFLAGS   += -Wno-pass-failed
endif
LDLIBS   := $(PKG_LIBS) -lm -fopenmp $(SAN)
DEPFLAGS  = -MMD -MP

PROTO_GEN := $(B)/gen/proto/ultrashard.pb-c.c
PROTO_HDR := $(B)/gen/proto/ultrashard.pb-c.h

KERNELS_SRC := $(wildcard kernels/*.c)
PROTO_SRC   := $(wildcard proto/*.c)
SHARD_SRC   := $(wildcard shard/*.c)
# coordinator/ rooms, callers first (the link order): cli -> serve -> infer -> model -> lookup.
ROOMS       := cli serve infer model lookup plan
room_src     = $(filter-out coordinator/cli/main.c,$(wildcard coordinator/$(1)/*.c))
TEST_SRC    := $(wildcard tests/unit/test_*.c)
TEST_SUPPORT:= $(filter-out $(TEST_SRC),$(wildcard tests/unit/*.c))

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

LIB_KERNELS := $(B)/libus_kernels.a
LIB_PROTO   := $(B)/libus_proto.a
LIB_SHARD   := $(B)/libus_shard.a
LIB_ROOMS   := $(patsubst %,$(B)/libus_%.a,$(ROOMS))
LIBS        := $(LIB_ROOMS) $(LIB_SHARD) $(LIB_PROTO) $(LIB_KERNELS)
BIN         := $(B)/ultrashard
TEST_BINS   := $(patsubst tests/unit/%.c,$(B)/tests/%,$(TEST_SRC))
# Helper programs for integration tests (e.g. numpy reference drivers).
TOOL_BINS   := $(patsubst tests/tools/%.c,$(B)/tools/%,$(wildcard tests/tools/*.c))
LAB_BINS    := $(B)/netrelay $(B)/pingpong

.PHONY: all test demo demo-scale demo-model ablation passkey bench benches plots asan clean tests tools fuzz fuzz-bins
all: $(BIN) tests tools $(LAB_BINS)

tests: $(TEST_BINS)

# MPI test programs: tests/mpi/*.c -> $(B)/tests/mpi/*, run by tests/integration/*.sh
MPI_TEST_BINS := $(patsubst tests/mpi/%.c,$(B)/tests/mpi/%,$(wildcard tests/mpi/*.c))
tests: $(MPI_TEST_BINS)
$(B)/tests/mpi/%: $(call obj,tests/mpi/%.c) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS)

tools: $(TOOL_BINS)

$(B)/tools/%: $(call obj,tests/tools/%.c) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS)

$(PROTO_GEN) $(PROTO_HDR): proto/ultrashard.proto
	@mkdir -p $(B)/gen
	protoc-c --c_out=$(B)/gen proto/ultrashard.proto

# Every object may include the generated header; generate it first.
$(B)/obj/%.o: %.c | $(PROTO_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(B)/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-unused-parameter $(DEPFLAGS) -c $< -o $@

$(LIB_KERNELS): $(call obj,$(KERNELS_SRC))
$(LIB_PROTO):   $(call obj,$(PROTO_SRC)) $(B)/obj/gen/proto/ultrashard.pb-c.o
$(LIB_SHARD):   $(call obj,$(SHARD_SRC))
$(foreach r,$(ROOMS),$(eval $(B)/libus_$(r).a: $(call obj,$(call room_src,$(r)))))
$(B)/lib%.a:
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(call obj,coordinator/cli/main.c) $(LIBS)
	$(CC) -o $@ $^ $(LDLIBS)

$(B)/tests/%: $(call obj,tests/unit/%.c) $(call obj,$(TEST_SUPPORT)) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS) -lcmocka

# Multi-host lab tools (deploy/lab/README.md): delay/loss relay, MPI ping-pong.
$(B)/netrelay: $(call obj,deploy/lab/netrelay.c deploy/lab/relay_core.c) $(LIB_KERNELS)
	$(CC) -o $@ $^ $(SAN)

$(B)/pingpong: $(call obj,deploy/lab/pingpong.c) $(LIB_KERNELS)
	$(CC) -o $@ $^ $(LDLIBS)

# The relay core's unit test links its object; us_err_set after it comes from
# a second mention of the kernels library ($^ lists each library only once).
$(B)/tests/test_relay_core: $(call obj,deploy/lab/relay_core.c)
$(B)/tests/test_relay_core: LDLIBS := $(LIB_KERNELS) $(LDLIBS)

test: all
	B=$(B) tests/run

demo: all
	B=$(B) deploy/demo.sh

# The trained models (python/train/, PyTorch twin python/ultrashard; CPU-heavy):
# demo-model retrains deploy/demo-model (~18 min), ablation trains and scores
# dense / MoE / UltraMem (~25 min), passkey evaluates (and fine-tunes) the demo
# model on passkey retrieval. deploy/demo-model/README.md has the numbers.
demo-model: all
	B=$(B) bash python/train/demo_model.sh

ablation: all
	B=$(B) bash python/train/ablation.sh

passkey: all
	B=$(B) bash python/train/passkey.sh

# The billion-value run (deploy/demo_scale.sh): ~6.5 GB of scratch under
# US_DEMO_SCALE_DIR (default $(B)/demo-scale), removed at the end unless KEEP=1.
demo-scale: all
	B=$(B) deploy/demo_scale.sh

# Benchmarks: tests/bench/NAME.sh is `make bench-NAME`; `make bench` runs them all,
# kernels first (the machine's limits), then draws the plots; a failing script is
# reported at the end and fails the target without stopping the others.
# tests/bench/bench_*.c are built to $(B)/bench/bench_* for those scripts.
BENCH_NAMES := $(patsubst tests/bench/%.sh,%,$(wildcard tests/bench/*.sh))
BENCH_BINS  := $(patsubst tests/bench/%.c,$(B)/bench/%,$(wildcard tests/bench/bench_*.c))
benches: $(BENCH_BINS)

$(B)/bench/%: $(call obj,tests/bench/%.c) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS)

# bench_peers talks to a redis-server through hiredis (deploy/setup.sh installs both).
$(B)/bench/bench_peers: LDLIBS += -lhiredis

bench: all benches
	@failed=""; for n in $(filter kernels,$(BENCH_NAMES)) $(filter-out kernels,$(BENCH_NAMES)); do \
	  echo "== bench-$$n"; B=$(B) bash tests/bench/$$n.sh || failed="$$failed $$n"; done; \
	/usr/bin/python3 tests/bench/plot.py; \
	if [ -n "$$failed" ]; then echo "bench: failed:$$failed"; exit 1; fi

# PNGs from bench/results/*.jsonl (latest run of each benchmark).
plots:
	/usr/bin/python3 tests/bench/plot.py

bench-%: all benches
	B=$(B) bash tests/bench/$*.sh

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer, in their own tree.
asan:
	$(MAKE) B=build/asan OPT="-O1 -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" tests
	B=build/asan US_UNIT_ONLY=1 \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 tests/run

# libFuzzer harnesses, tests/fuzz/fuzz_NAME.c -> $(B)/fuzz/fuzz_NAME (clang only,
# so plain `make` never builds them): the libraries are built again with clang
# and sanitizer coverage in build/fuzz, then tests/fuzz/run.sh runs each harness
# for FUZZ_SECONDS on a copy of its corpus and fails on any crash, leak or timeout.
FUZZ_SECONDS ?= 10
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz:
	$(MAKE) B=build/fuzz CC=clang OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
	  fuzz-bins
	B=build/fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

fuzz-bins: $(FUZZ_BINS)

$(B)/fuzz/fuzz_%: $(call obj,tests/fuzz/fuzz_%.c) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS) -fsanitize=fuzzer

clean:
	rm -rf build

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
