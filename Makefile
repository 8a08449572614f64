# mcpgw: `make demo` to see it work, `make test` to test it.
#
# Both build the container images locally (`make images`, cached): there is
# no registry to pull from.

CARGO   ?= cargo
PYTHON  ?= python3
VENV    := .venv
DEMO    := catalog/demo.yaml

# One build serves everything. On x86_64 Linux every cargo command here
# builds for the explicit target x86_64-unknown-linux-gnu with a static C
# runtime, so the binaries that run on this machine (the gateway, the test
# binaries) are the ones the FROM scratch images hold as well, and the
# workspace is compiled once, not once more per image. (Cargo applies the
# target's flags to target code only: build scripts and proc macros stay
# dynamic.) Elsewhere builds are native, and scripts/build-images.sh
# cross-builds the images' binaries itself.
ifeq ($(shell uname -sm),Linux x86_64)
export CARGO_BUILD_TARGET := x86_64-unknown-linux-gnu
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS := -C target-feature=+crt-static
OUT := target/x86_64-unknown-linux-gnu
FROM_BUILD = MCPGW_STATIC_BIN_DIR=$(CURDIR)/$(OUT)/$(1)
else
OUT := target
FROM_BUILD =
endif
MCPGW := $(OUT)/debug/mcpgw

.PHONY: all build images images-gateway demo test test-deps test-compose test-podman check-docker lint unit witness venv bench bench-smoke clean

all: build

build:
	$(CARGO) build --workspace

# The images the tests and the demo run: the Rust test server (its binary
# from the build above) and the Python servers (a Debian rootfs, cached).
images: check-docker build
	$(call FROM_BUILD,debug) scripts/build-images.sh test

# The gateway itself in an image, for compose/docker-compose.yaml.
images-gateway: check-docker build
	$(call FROM_BUILD,debug) scripts/build-images.sh gateway

check-docker:
	@docker info >/dev/null 2>&1 || { \
	  echo "error: no Docker engine is reachable. mcpgw runs every MCP server in a container," >&2; \
	  echo "       so its tests and demo need one: start Docker (or set DOCKER_HOST) and retry." >&2; \
	  exit 1; }

# The first run builds the workspace (cargo) while the Python servers'
# image is made (mmdebstrap), side by side; later runs find both cached.
demo: check-docker
	@echo "== building mcpgw (cargo build, once) and, meanwhile, the Python servers' image" >&2
	@scripts/build-images.sh python & python=$$!; \
	  $(CARGO) build --workspace; built=$$?; \
	  wait $$python; made=$$?; \
	  [ $$built = 0 ] && [ $$made = 0 ]
	$(call FROM_BUILD,debug) scripts/build-images.sh testserver
	@echo "== mcpgw validate --catalog $(DEMO)" >&2
	$(MCPGW) validate --catalog $(DEMO)
	@echo "== mcpgw tools --catalog $(DEMO)" >&2
	MCPGW_LOG=warn $(MCPGW) tools --catalog $(DEMO)
	@echo "== mcpgw call --catalog $(DEMO) time__get_current_time '{\"timezone\":\"Europe/Paris\"}'" >&2
	MCPGW_LOG=warn $(MCPGW) call --catalog $(DEMO) time__get_current_time '{"timezone":"Europe/Paris"}'

# Everything: formatting, lints, unit and in-memory tests, tests against the
# real Docker engine, and the official Python MCP client as an outside witness.
test: check-docker test-deps lint images images-gateway unit witness test-podman bench-smoke

# System packages the tests need (a Secret Service among them); installs
# what is missing when run as root, as in CI.
test-deps:
	scripts/test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

$(VENV)/.installed: tests/witness/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/witness/requirements.txt
	touch $@

venv: $(VENV)/.installed

witness: venv build
	MCPGW_BIN=$(CURDIR)/$(MCPGW) $(VENV)/bin/python -m pytest -v tests/witness

# The container tests again against Podman, the second engine (its
# Docker-compatible service on a private socket; also part of `make test`).
test-podman: check-docker images
	scripts/test-podman.sh

# The compose stack alone (also part of `make test`, through the witness).
test-compose: check-docker images images-gateway venv build
	MCPGW_BIN=$(CURDIR)/$(MCPGW) $(VENV)/bin/python -m pytest -v tests/witness/test_compose.py

# Benchmarks (not tests): the harness measures mcpgw against direct calls
# to its backends (the Rust test server and the Python SDK server), and
# against mcp-proxy over HTTP when it is installed (`cargo install mcp-proxy
# --version 0.6.0 --locked --no-default-features --features yaml`; the
# tables say when it is not), in one run; it prints Markdown tables and
# rewrites the generated block of BENCHMARKS.md; then the micro-benchmarks.
# Pass BENCH_ARGS (e.g. `--runs 3 --only overhead`) to the harness. The
# Rust test server's image then holds its release build (`make images`
# puts the debug one back).
bench: check-docker
	$(CARGO) build --release -p mcpgw -p mcpgw-bench -p mcpgw-testserver
	$(call FROM_BUILD,release) scripts/build-images.sh test
	$(OUT)/release/mcpgw-bench --gateway $(OUT)/release/mcpgw --write BENCHMARKS.md $(BENCH_ARGS)
	$(CARGO) bench -p mcpgw-secrets --bench redact
	$(CARGO) bench -p mcpgw-bench --bench micro
	$(CARGO) bench -p mcpgw-bench --bench search

# The harness on a tiny workload: it runs, and every call it makes is
# answered correctly. No timing is checked.
bench-smoke: images build
	$(OUT)/debug/mcpgw-bench --quick --gateway $(MCPGW) > /dev/null

clean:
	$(CARGO) clean
	rm -rf $(VENV) .cache
