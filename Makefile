# mcpgw: `make demo` to see it work, `make test` to test it.
#
# Both build the container images locally (`make images`, cached): there is
# no registry to pull from.

CARGO   ?= cargo
PYTHON  ?= python3
VENV    := .venv
MCPGW   := target/debug/mcpgw
DEMO    := catalog/demo.yaml

.PHONY: all build images demo test test-deps test-compose check-docker lint unit witness venv bench bench-smoke clean

all: build

build:
	$(CARGO) build --workspace

images: check-docker
	scripts/build-images.sh test
	scripts/build-images.sh gateway

check-docker:
	@docker info >/dev/null 2>&1 || { \
	  echo "error: no Docker engine is reachable. mcpgw runs every MCP server in a container," >&2; \
	  echo "       so its tests and demo need one: start Docker (or set DOCKER_HOST) and retry." >&2; \
	  exit 1; }

demo: images build
	@echo "== mcpgw validate --catalog $(DEMO)" >&2
	$(MCPGW) validate --catalog $(DEMO)
	@echo "== mcpgw tools --catalog $(DEMO)" >&2
	MCPGW_LOG=warn $(MCPGW) tools --catalog $(DEMO)
	@echo "== mcpgw call --catalog $(DEMO) time__get_current_time '{\"timezone\":\"Europe/Paris\"}'" >&2
	MCPGW_LOG=warn $(MCPGW) call --catalog $(DEMO) time__get_current_time '{"timezone":"Europe/Paris"}'

# Everything: formatting, lints, unit and in-memory tests, tests against the
# real Docker engine, and the official Python MCP client as an outside witness.
test: check-docker test-deps lint images unit witness bench-smoke

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

# The compose stack alone (also part of `make test`, through the witness).
test-compose: check-docker images venv build
	MCPGW_BIN=$(CURDIR)/$(MCPGW) $(VENV)/bin/python -m pytest -v tests/witness/test_compose.py

# Benchmarks (not tests): the harness measures mcpgw against direct calls
# to its backends (the Rust test server and the Python SDK server), and
# against mcp-proxy over HTTP when it is installed (`cargo install mcp-proxy
# --version 0.6.0 --locked --no-default-features --features yaml`; the
# tables say when it is not), in one run; it prints Markdown tables and
# rewrites the generated block of BENCHMARKS.md; then the micro-benchmarks.
# Pass BENCH_ARGS (e.g. `--runs 3 --only overhead`) to the harness.
bench: images
	$(CARGO) build --release -p mcpgw -p mcpgw-bench
	target/release/mcpgw-bench --gateway target/release/mcpgw --write BENCHMARKS.md $(BENCH_ARGS)
	$(CARGO) bench -p mcpgw-secrets --bench redact
	$(CARGO) bench -p mcpgw-bench --bench micro

# The harness on a tiny workload: it runs, and every call it makes is
# answered correctly. No timing is checked.
bench-smoke: images build
	target/debug/mcpgw-bench --quick --gateway $(MCPGW) > /dev/null

clean:
	$(CARGO) clean
	rm -rf $(VENV) .cache
