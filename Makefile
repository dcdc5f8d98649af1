# ds3 -- DeepSeek-V3 in C.   `make` builds build/ds3; `make test` runs every check.
#
# Build folders: build/ (release), build-asan/ (ASan+UBSan), build-fuzz/ (libFuzzer).
# Per-ISA kernel files get their own -m flags; the rest of the code is plain C11 so the
# binary runs on any x86-64 and picks its kernels at startup.

CC      ?= cc
O       ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
WARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes -Wpointer-arith
CPPFLAGS_ALL := -std=c11 -D_GNU_SOURCE -Iinclude -Isrc $(shell pkg-config --cflags jansson libpcre2-8 libpng 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs jansson libpcre2-8 libpng 2>/dev/null || echo -ljansson -lpcre2-8 -lpng) -lpthread -lm
SAN     ?=
ifeq ($(SAN),1)
  CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
  FLAGS_avx2   := -mavx2 -mfma -mf16c
  FLAGS_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c
endif

# A source file whose name contains "avx512" (or else "avx2") is compiled for that ISA.
isa_flags = $(if $(findstring avx512,$(notdir $(1))),$(FLAGS_avx512),$(if $(findstring avx2,$(notdir $(1))),$(FLAGS_avx2)))

LIB_SRC  := $(sort $(shell find src -name '*.c' -not -path 'src/cli/*'))
# NO_SIMD=1 (or a non-x86 machine): scalar kernels only (the fuzz build uses it: the parsers
# need no SIMD, and clang's sanitizers make the intrinsic-heavy files very slow to compile).
ifneq ($(ARCH),x86_64)
  NO_SIMD := 1
endif
ifeq ($(NO_SIMD),1)
  LIB_SRC := $(foreach f,$(LIB_SRC),$(if $(findstring avx,$(notdir $(f))),,$(f)))
  CPPFLAGS_ALL += -DDS3_NO_SIMD
endif
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(O)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(O)/obj/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(O)/tests/%)
DEPS     := $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

.PHONY: all test test-asan bench bench-llamacpp fuzz deps run clean check-deps
all: $(O)/ds3 $(O)/libds3.a $(TESTS)

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS) $(WARN) $(call isa_flags,$<) -MMD -MP -c $< -o $@

$(O)/libds3.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(O)/ds3: $(CLI_OBJ) $(O)/libds3.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(O)/libds3.a $(LDLIBS)

$(O)/tests/%: tests/%.c $(wildcard tests/*.h) $(O)/libds3.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Itests $(CFLAGS) $(WARN) -o $@ $< $(O)/libds3.a $(LDFLAGS) $(LDLIBS)

-include $(DEPS)

# The test runner: every tests/test_* binary, then tests/*.sh; ends with "N passed, N failed".
test: all
	@DS3_BUILD=$(O) sh tests/run.sh

test-asan:
	$(MAKE) O=build-asan SAN=1 all
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 DS3_BUILD=build-asan DS3_ASAN=1 sh tests/run.sh

bench: all
	@sh bench/run.sh

# ds3 against llama.cpp's own llama-bench on the same GGUF files (builds llama.cpp once, ~17 min).
bench-llamacpp: all
	@sh bench/llamacpp_bench.sh

# libFuzzer targets (clang). Run one: build-fuzz/fuzz_safetensors -max_total_time=600 fuzz/corpus/safetensors
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
fuzz:
	$(MAKE) O=build-fuzz CC=clang NO_SIMD=1 CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" LDFLAGS="-fsanitize=address,undefined" build-fuzz/libds3.a
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "clang $$f -> build-fuzz/$$n"; \
	  clang $(CPPFLAGS_ALL) -DDS3_NO_SIMD -O1 -g -fsanitize=fuzzer,address,undefined -o build-fuzz/$$n $$f build-fuzz/libds3.a $(LDLIBS) || exit 1; done

DEB_PKGS := build-essential pkg-config clang libclang-rt-14-dev libjansson-dev libpcre2-dev libpng-dev
deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS)

check-deps:
	@pkg-config --exists jansson libpcre2-8 libpng || $(MAKE) deps

# The default model (models/default, trained by ds3 itself) tells a story; PROMPT=... to change it.
PROMPT ?= Once upon a time
run: check-deps
	@$(MAKE) --no-print-directory $(O)/ds3
	@if [ -f models/default/config.json ]; then \
	  $(O)/ds3 run -p "$(PROMPT)" -n 200 --temp 0.7 --seed 1; \
	else \
	  echo "(models/default is not there yet: running the golden test checkpoint on token ids)"; \
	  $(O)/ds3 run -m tests/fixtures/golden/dev/checkpoint --tokens 0,5,17,42 -n 32 --temp 0; \
	fi

clean:
	rm -rf build build-asan build-fuzz build-nosimd
