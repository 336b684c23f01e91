# The two commands a newcomer needs: `make run` and `make test` (see README.md).
# Both install what they need first (Debian packages via apt-get when missing, and .venv).

VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= etc/dev.toml

.PHONY: run test lint typecheck pytest bootstrap bootstrap-test bench clean

run: bootstrap
	$(BIN)/mailwarden --config $(CONFIG) init
	exec $(BIN)/mailwarden --config $(CONFIG) serve

test: bootstrap-test lint typecheck pytest

bootstrap:
	scripts/bootstrap.sh run

bootstrap-test:
	scripts/bootstrap.sh test

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q

bench: bootstrap-test
	$(BIN)/python bench/hashing.py
	$(BIN)/python bench/import_passwdfile.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
