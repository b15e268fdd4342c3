# wasmgrid: the habits of the system we started from, on cargo.
#
#   make               build ./bin/master, ./bin/executor, ./bin/master-client
#   make unit_test     run every test (the command CI runs)
#   make dev           fmt, clippy and tests
#   make tools_setup   install the guest toolchain (clang, wasi-libc)
#   make examples      build the example tasks into examples/tasks/build/
#   make demo          a local master + executor running every example
#   make bench         the benchmark table (bench/RESULTS.md)
#
# Everything uses the release profile, so tests, demo, benchmark and ./bin share one build.

CARGO ?= cargo
PROFILE := --release
BINS := master executor master-client

.PHONY: all build unit_test test dev fmt clippy tools_setup examples demo bench clean

all: build

build:
	$(CARGO) build $(PROFILE) --bins
	@mkdir -p bin
	@for b in $(BINS); do cp target/release/$$b bin/$$b; done
	@echo "built: $(addprefix bin/,$(BINS))"

unit_test:
	$(CARGO) build $(PROFILE) --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run $(PROFILE) --workspace; \
	else \
		$(CARGO) test $(PROFILE) --workspace; \
	fi

test: unit_test

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

dev: fmt clippy unit_test

clean:
	$(CARGO) clean
	rm -rf bin
