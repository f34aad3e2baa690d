# libFuzzer targets of the core's parsers (tests/fuzz/README.md), built with
# Debian's clang-14 against the core sources, as the unit tests are.
# `make fuzz FUZZ_SECONDS=N [FUZZ_JOBS=J]` runs each target N seconds, J at
# a time; `make fuzz-valgrind` replays every corpus under valgrind.
FUZZ_CC ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_PLAIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/plain/%,$(FUZZ_SRC))
FUZZ_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -g -O1 \
    -fno-omit-frame-pointer -Iinclude $(APR_CFLAGS)

FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJ := $(patsubst mod_ocireg/%.c,$(BUILD)/fuzz/obj/%.o,$(CORE_SRC))

# The core once, instrumented for coverage and sanitizers, kept between
# builds.
.SECONDARY: $(FUZZ_OBJ)
$(BUILD)/fuzz/obj/%.o: mod_ocireg/%.c $(HEADERS)
	@mkdir -p $(BUILD)/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) $< $(FUZZ_OBJ) \
	    -o $@ $(APR_LIBS) $(LIBS)

# The same targets without sanitizers, fed by tests/fuzz/standalone.c.
$(BUILD)/fuzz/plain/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/standalone.c $(CORE_SRC) $(HEADERS)
	@mkdir -p $(BUILD)/fuzz/plain
	$(CC) $(FUZZ_CFLAGS) $< tests/fuzz/standalone.c $(CORE_SRC) -o $@ \
	    $(APR_LIBS) $(LIBS)

.PHONY: fuzz fuzz-build fuzz-valgrind
fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@printf '%s\n' $(FUZZ_NAMES) | xargs -P $(FUZZ_JOBS) -I{} \
	    sh tests/fuzz/run.sh $(BUILD)/fuzz {} $(FUZZ_SECONDS)

fuzz-valgrind: $(FUZZ_PLAIN) $(UNIT_BIN)
	@set -e; for n in $(FUZZ_NAMES); do \
	    valgrind -q --error-exitcode=1 --leak-check=full \
	        --errors-for-leak-kinds=definite \
	        $(BUILD)/fuzz/plain/fuzz_$$n tests/fuzz/corpus/$$n; done
	@set -e; for t in $(UNIT_BIN); do \
	    valgrind -q --error-exitcode=1 --leak-check=full \
	        --errors-for-leak-kinds=definite $$t >/dev/null; echo "valgrind clean: $$t"; done

# Regenerates the committed seeds (tests/fuzz/make_corpus.py).
.PHONY: fuzz-seeds
fuzz-seeds:
	@mkdir -p $(BUILD)/fuzz/session_seeds
	$(CC) $(FUZZ_CFLAGS) tests/fuzz/session_seeds.c $(CORE_SRC) \
	    -o $(BUILD)/fuzz/session_seeds.bin $(APR_LIBS) $(LIBS)
	$(BUILD)/fuzz/session_seeds.bin $(BUILD)/fuzz/session_seeds
	python3 tests/fuzz/make_corpus.py
