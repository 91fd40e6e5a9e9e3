# Two commands matter: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the test-suite drives for real (registry, clients, TLS peers).
TEST_DEBS := docker-registry skopeo podman containerd nginx-light apache2-utils curl openssl \
	debootstrap buildah runc

.PHONY: run test lint typecheck unit e2e venv test-venv system-deps clean bench bench-debs soak image-test fuzz chaos

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	    rm -rf $(VENV); $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; fi; }
	@$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[tui]'
	@touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed

venv: $(VENV)/.installed
test-venv: $(VENV)/.installed-test

run: venv
	$(BIN)/appliance run $(ARGS)

system-deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not root: tests needing$$missing will be skipped"; fi; \
	fi

lint: test-venv
	$(BIN)/ruff check .

typecheck: test-venv
	$(BIN)/mypy

test: system-deps test-venv lint typecheck
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Hypothesis over the front door, the registry routes and the config loaders (tests/fuzz): each
# property runs on fresh random examples for FUZZ_SECONDS, then stops by itself (6 properties, so
# ~6 x FUZZ_SECONDS in all).  `make test` runs the same properties once, quickly and derandomized.
FUZZ_SECONDS ?= 30
fuzz: test-venv
	APPLIANCE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/pytest -q -p no:cacheprovider --timeout=0 tests/fuzz $(PYTEST_ARGS)

# Issue 15's chaos suite: 20 x kill -9 in fills, a full cache filesystem (a small tmpfs: root),
# upstream cut/reset/hang/503/429/corrupt/slow storms.  Loopback only, bounded, minutes; not in `make test`.
# APPLIANCE_CHAOS_SEED=N replays another random schedule.
chaos: system-deps test-venv
	APPLIANCE_CHAOS=1 $(BIN)/pytest -q -m chaos tests/chaos $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Benchmarks against the peers (issue 9; docs/performance.md): not part of `make test`.
# BENCH_ARGS=--quick for a tiny-size run; results land in bench/results/latest.json.
BENCH_DEBS := docker-registry skopeo nginx-light curl
bench-debs:
	@missing=""; for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run as root to install them)"; exit 1; fi; \
	fi

bench: test-venv bench-debs
	$(BIN)/python -m bench $(BENCH_ARGS)

# Soak (issue 15; docs/security.md): SOAK_CLIENTS (200) clients over both modes for SOAK_SECONDS
# (300) with SOAK_SLOW (200) slowloris connections alongside, loopback only, stops by itself.
# Exit 1 when a check fails; results land in bench/results/soak-latest.json.
soak: test-venv bench-debs
	$(BIN)/python -m bench.soak

# Build the Dockerfile with buildah and run the image with podman, no Docker engine (issue 8):
# see scripts/image-test.sh.  As root, installs the Debian packages it drives; exit 77 is a skip.
IMAGE_DEBS := debootstrap buildah podman runc curl openssl
image-test:
	@missing=""; for p in $(IMAGE_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@scripts/image-test.sh; status=$$?; [ $$status = 77 ] || exit $$status
