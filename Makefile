VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test test-fast test-unit test-integration test-e2e test-deploy lint audit demo bench bench-load bench-quick bench-soak clean

setup:
	@bash scripts/bootstrap.sh

test: setup
	$(PY) -m pytest -q -ra --durations=15

# The edit loop: everything but the real-time media tests (slow) and the Docker deployment (deploy).
test-fast: setup
	$(PY) -m pytest -q -ra --durations=10 -m "not slow and not deploy"

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-integration: setup
	$(PY) -m pytest -q -ra tests/integration

test-e2e: setup
	$(PY) -m pytest -q -ra tests/e2e

# Builds both images and runs docker-compose.yml on a Docker engine (started here when none answers).
test-deploy: setup
	$(PY) -m pytest -q -ra tests/deploy

lint: setup
	$(PY) -m ruff check .
	$(PY) -m bandit -q -r apps libs --severity-level medium  # medium and high: none may be left

# Known vulnerabilities in the installed dependencies; needs pypi.org's JSON API (not a mirror).
audit: setup
	$(PY) -m pip_audit --progress-spinner off

demo: setup
	$(PY) -m livedub_testkit.demo

bench: setup
	$(PY) bench/bench_asr.py
	$(PY) bench/bench_sts.py
	$(PY) bench/bench_media.py
	$(PY) bench/bench_e2e.py
	$(PY) bench/bench_load.py

bench-load: setup
	$(PY) bench/bench_load.py

bench-quick: setup
	$(PY) bench/bench_load.py --quick

# An hour (issue 9: leaks and drift); not part of `make bench`. SOAK_ARGS="--seconds 120" for a smoke run.
bench-soak: setup
	$(PY) bench/bench_soak.py $(SOAK_ARGS)

clean:
	rm -rf out .pytest_cache
