# Builds mod_ocireg.so with apxs (Debian apache2-dev) and the core's unit
# tests with the same compiler flags.
APXS ?= apxs
CC ?= cc
# SANITIZE=1: ASan + UBSan (halting on the first report) in a separate BUILD,
# so a normal build is never overwritten.
ifeq ($(SANITIZE),1)
BUILD ?= build-san
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
BUILD ?= build
SAN_FLAGS :=
endif

CORE_SRC := $(sort $(wildcard mod_ocireg/ocireg_*.c))
GLUE_SRC := $(sort $(wildcard mod_ocireg/mod_ocireg*.c))
HEADERS := $(wildcard include/*.h)
WARN := -std=gnu11 -Wall -Wextra -Werror
LIBS := -ljansson -lcrypto -lcurl

APR_CFLAGS := $(shell apr-1-config --cflags --cppflags --includes 2>/dev/null) $(shell apu-1-config --includes 2>/dev/null)
APR_LIBS := $(shell apr-1-config --link-ld --libs 2>/dev/null) $(shell apu-1-config --link-ld 2>/dev/null)

MODULE := $(BUILD)/mod_ocireg.so

$(MODULE): $(CORE_SRC) $(GLUE_SRC) $(HEADERS) mod_ocireg/exports.map apxs.mk
	@mkdir -p $(BUILD)/obj
	cp $(CORE_SRC) $(GLUE_SRC) $(BUILD)/obj/
	cd $(BUILD)/obj && $(APXS) -c -o mod_ocireg.la -I$(CURDIR)/include \
	    $(addprefix -Wc$(comma),$(WARN) $(SAN_FLAGS)) \
	    -Wl,-Wl$(comma)--version-script=$(CURDIR)/mod_ocireg/exports.map \
	    $(if $(SAN_FLAGS),$(SAN_LINK)) \
	    $(LIBS) $(notdir $(GLUE_SRC) $(CORE_SRC)) >build.log 2>&1 \
	    || { cat build.log; exit 1; }
	@# A new inode, so a running httpd keeps the code it mapped.
	cp $(BUILD)/obj/.libs/mod_ocireg.so $(MODULE).new && mv -f $(MODULE).new $(MODULE)

comma := ,
# libtool drops -fsanitize when linking a shared object: name the runtimes,
# so the module records them (the test harness preloads what `ldd` shows).
SAN_LINK := -lasan -lubsan

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))

$(BUILD)/unit/%: tests/unit/%.c $(CORE_SRC) $(HEADERS)
	@mkdir -p $(BUILD)/unit
	$(CC) $(WARN) $(SAN_FLAGS) -g -O1 -Iinclude $(APR_CFLAGS) $< $(CORE_SRC) -o $@ \
	    -lcmocka $(APR_LIBS) $(LIBS)

# The S3 client on its own, driven against the test RGW by
# tests/integration/test_s3_client_ops.py; built with the unit tests.
S3OPS_BIN := $(BUILD)/tools/s3_client_ops

$(S3OPS_BIN): tests/integration/s3_client_ops.c $(CORE_SRC) $(HEADERS)
	@mkdir -p $(BUILD)/tools
	$(CC) $(WARN) $(SAN_FLAGS) -g -O1 -Iinclude $(APR_CFLAGS) $< $(CORE_SRC) -o $@ \
	    $(APR_LIBS) $(LIBS)

# The upstream registry client on its own, driven against real registries
# by tests/integration/test_upstream_client.py; built with the unit tests.
UPOPS_BIN := $(BUILD)/tools/upstream_client_ops

$(UPOPS_BIN): tests/integration/upstream_client_ops.c $(CORE_SRC) $(HEADERS)
	@mkdir -p $(BUILD)/tools
	$(CC) $(WARN) $(SAN_FLAGS) -g -O1 -Iinclude $(APR_CFLAGS) $< $(CORE_SRC) -o $@ \
	    $(APR_LIBS) $(LIBS)
