# trainship: `make demo` and `make test` work on a fresh machine; nothing to install by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# requirements.lock: every package at one version (for Python 3.11+ on Linux, by
# `make lock`); make, the buildspecs, the Lambda bundle and the image install with it
LOCK := requirements.lock
UV_VERSION := 0.13.9
LOCK_OPTIONS ?=
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-12)

CHECKOV := $(VENV)/checkov/bin/checkov
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: containers chromium venv lock demo test test-flavors test-unit test-e2e test-infra lint typecheck statelint synth bench down clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## lock: rewrite requirements.lock from pyproject.toml (uv pip compile, every extra, universal
## for Python >= 3.11; keeps the locked versions that still fit, LOCK_OPTIONS=--upgrade moves
## all of them); needs PyPI. tests/unit/test_lock.py fails until the lock fits pyproject.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	UV_CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/uv pip compile --quiet pyproject.toml \
	  --all-extras --universal --python-version 3.11 --no-annotate $(LOCK_OPTIONS) -o $(LOCK)

## demo: start the local stack, deploy docs/examples/iris_sklearn.py, print the URL and a prediction
demo: venv
	$(BIN)/python -m trainship.demo

# checkov lives in its own venv: its pins (packaging<24) clash with pytest's.
$(CHECKOV):
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet 'checkov==3.3.30'

# container mode (target podman): Debian's podman, buildah, docker-registry, debootstrap
CONTAINER_TOOLS := podman buildah docker-registry debootstrap catatonit
CONTAINER_PACKAGES := $(CONTAINER_TOOLS) runc skopeo uidmap
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
containers:
	@missing=; for tool in $(CONTAINER_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	    --no-install-recommends $(CONTAINER_PACKAGES); fi

# the console's browser tests (tests/e2e/test_console.py): Debian's chromium, driven by the
# playwright package from the dev extra (never `playwright install`: no browser download)
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	    --no-install-recommends chromium; fi

## test: lint, type-check, validate the ASL, then unit, infra (cdk-nag, cfn-lint, checkov) and end-to-end tests (container mode and the console in headless Chromium included)
# tests/unit on every core (pytest-xdist; its pip and checkov tests included), then the rest
# serially: the infra tests share one synth, the end-to-end tests one local stack (and
# contend for the CPU). Both parts run; make fails if either did.
test: venv $(CHECKOV) containers chromium lint typecheck statelint
	$(BIN)/python -m pytest -q -ra -n auto tests/unit; unit=$$?; \
	$(BIN)/python -m pytest -q -ra tests/infra tests/e2e && exit $$unit

## test-flavors: only the flavor matrix (one deployment per MLflow flavor; make test runs it too)
test-flavors: venv containers
	$(BIN)/python -m pytest -q -ra -m flavors tests/e2e/test_flavors.py

## test-unit: the loop to run while working: tests/unit on every core (no stack, no CDK synth, no checkov, no pip installs)
test-unit: venv
	$(BIN)/python -m pytest -q -ra -n auto -m "not e2e and not flavors and not infra and not pip" tests/unit

test-e2e: venv chromium
	$(BIN)/python -m pytest -q -ra -m e2e

## test-infra: the CDK app synthesized and checked (cdk-nag, cfn-lint, checkov), and the manifests' checkov run
test-infra: venv $(CHECKOV)
	$(BIN)/python -m pytest -q -ra tests/infra
	$(BIN)/python -m pytest -q -ra -m infra tests/unit

## synth: the CloudFormation template in cdk.out (Lambda code bundled with pip, no Docker), linted
synth: venv $(CHECKOV)
	$(BIN)/python -m infra.app
	$(BIN)/cfn-lint cdk.out/Trainship.template.json --non-zero-exit-code error
	$(CHECKOV) -f cdk.out/Trainship.template.json --framework cloudformation --skip-download --compact --quiet

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy trainship lambdas infra

statelint: venv
	$(BIN)/statelint infra/statemachine/deploy.asl.json

## bench: trainship's inference service vs `mlflow models serve` (wrk, the servers interleaved), a 64-connection soak, and both images' sizes
bench: venv containers
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/serving_bench.py

## down: stop the local stack and every model server it started
down: venv
	$(BIN)/trainship local down

clean: down
	rm -rf .trainship
