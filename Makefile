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
	@sh conf/run.sh "$(CURDIR)" "$(PORT)" "$(DATA)"

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(MODULE)
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

test: test-deps
	@$(MAKE) --no-print-directory build unit
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10
	@$(MAKE) --no-print-directory integration

clean:
	rm -rf $(BUILD)

# Benchmark against CNCF distribution (tests/bench/README.md); QUICK=1 for a reduced run.
.PHONY: bench
bench: deps
	@sh tests/bench/deps.sh
	@$(MAKE) --no-print-directory build
	@$(PYTHON) tests/bench/bench.py $(if $(QUICK),--quick)
