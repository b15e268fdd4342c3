# wasmgrid: the habits of the system we started from, on cargo.
#
#   make               build ./bin/master, ./bin/executor, ./bin/master-client, ./bin/componentize
#   make unit_test     run every test (the command CI runs)
#   make dev           fmt, clippy and tests
#   make tools_setup   install the guest toolchain (clang, wasi-libc)
#   make examples      build the example tasks into examples/tasks/build/
#   make demo          a local master + executor running every example
#   make fuzz          every cargo-fuzz target for FUZZ_SECONDS (60) each (nightly)
#   make bench         the benchmark table (release build; RECORD=bench/RESULTS.md to keep it;
#                      installs the C toolchain first, so native code is built with the
#                      examples' clang-16)
#
# The tests, the examples' tooling and the demo share the dev profile, so CI compiles the
# dependencies once (a release build of wasmtime and tonic takes about 15 minutes on 2 cores);
# ./bin is optimized.

CARGO ?= cargo
BINS := master executor master-client componentize

.PHONY: all build unit_test test dev fmt clippy tools_setup examples demo bench fuzz clean

all: build

build:
	$(CARGO) build --release --bins
	@mkdir -p bin
	@for b in $(BINS); do cp target/release/$$b bin/$$b; done
	@echo "built: $(addprefix bin/,$(BINS))"

unit_test:
	$(CARGO) build --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace; \
	else \
		$(CARGO) test --workspace; \
	fi

test: unit_test

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

dev: fmt clippy unit_test

tools_setup:
	@bash scripts/tools_setup.sh

examples: tools_setup
	@bash scripts/build_examples.sh

demo:
	$(CARGO) build --bins
	target/debug/demo

fuzz:
	@FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) FUZZ_PROFILE=$(or $(FUZZ_PROFILE),release) bash scripts/fuzz.sh

bench: tools_setup
	$(CARGO) build --release --bins
	target/release/bench $(if $(RECORD),--record $(RECORD))

clean:
	$(CARGO) clean
	rm -rf bin
