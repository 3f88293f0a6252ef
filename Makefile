# trainship: `make demo` and `make test` work on a fresh machine; nothing to install by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv demo test test-unit test-e2e lint typecheck statelint down clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## demo: start the local stack, deploy docs/examples/iris_sklearn.py, print the URL and a prediction
demo: venv
	$(BIN)/python -m trainship.demo

## test: lint, type-check, validate the ASL, then unit and end-to-end tests
test: venv lint typecheck statelint
	$(BIN)/python -m pytest -q -ra

test-unit: venv
	$(BIN)/python -m pytest -q -ra -m "not e2e"

test-e2e: venv
	$(BIN)/python -m pytest -q -ra -m e2e

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy trainship lambdas

statelint: venv
	$(BIN)/statelint infra/statemachine/deploy.asl.json

## down: stop the local stack and every model server it started
down: venv
	$(BIN)/trainship local down

clean: down
	rm -rf .trainship
