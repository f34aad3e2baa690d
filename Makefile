# mod_ocireg: `make run` serves a registry, `make test` runs every test.
include apxs.mk
include tests/fuzz/fuzz.mk

PORT ?= 5000
DATA ?= $(CURDIR)/var
PYTHON ?= /usr/bin/python3

.PHONY: all build deps test-deps run test unit integration clean

all: build
build: $(MODULE)

deps:
	@sh tests/install-deps.sh run

test-deps:
	@sh tests/install-deps.sh test

run: deps
	@$(MAKE) --no-print-directory build
	@CONF_EXTRA="$(CONF_EXTRA)" sh conf/run.sh "$(CURDIR)" "$(PORT)" "$(DATA)"

unit: $(UNIT_BIN) $(S3OPS_BIN) $(UPOPS_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; \
	    UBSAN_OPTIONS=print_stacktrace=1 $$t; done

# The harness preloads the sanitizer runtimes into apache2 when the module
# is a SANITIZE=1 build and fails a test on any report (tests/integration).
integration: $(MODULE)
	OCIREG_MODULE=$(CURDIR)/$(MODULE) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# `make test` runs everything twice: as built, then the same unit and
# integration tests again with ASan+UBSan (build-san/). SANITIZE=1 runs only
# the sanitizer pass, SANITIZE=0 only the plain one.
test: test-deps
	@$(MAKE) --no-print-directory build unit
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10
	@$(MAKE) --no-print-directory integration
ifeq ($(SANITIZE),)
	@echo "== again under AddressSanitizer and UndefinedBehaviorSanitizer (build-san/)"
	@$(MAKE) --no-print-directory SANITIZE=1 build unit
	@$(MAKE) --no-print-directory SANITIZE=1 integration
endif

clean:
	rm -rf $(BUILD) build build-san

# Benchmark against CNCF distribution (tests/bench/README.md); QUICK=1 for a reduced run,
# ONLY=latency (or scenario numbers) for some scenarios, RTT_MS for the latency scenario.
RTT_MS ?= 40
.PHONY: bench
bench: deps
	@sh tests/bench/deps.sh
	@$(MAKE) --no-print-directory build
	@$(PYTHON) tests/bench/bench.py $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY)) --rtt-ms $(RTT_MS)
