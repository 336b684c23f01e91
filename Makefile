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

# --------------------------------------------------------------------------- install
# `make install` as root: a virtualenv in $(PREFIX), the systemd unit, and
# /etc/mailwarden/mailwarden.toml if there is none (an existing one is kept).
# DESTDIR stages everything under another root (packaging, or a test).
PREFIX ?= /opt/mailwarden
DESTDIR ?=
SYSTEMD_DIR ?= /etc/systemd/system
PYTHON ?= python3

.PHONY: install
install:
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)
	$(DESTDIR)$(PREFIX)/bin/pip install -q .
	install -d $(DESTDIR)$(PREFIX)/share/doc/mailwarden $(DESTDIR)/etc/mailwarden $(DESTDIR)$(SYSTEMD_DIR)
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/mailwarden/README.md
	cp -r docs $(DESTDIR)$(PREFIX)/share/doc/mailwarden/
	sed 's|/opt/mailwarden|$(PREFIX)|g' etc/systemd/mailwarden.service > $(DESTDIR)$(SYSTEMD_DIR)/mailwarden.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_DIR)/mailwarden.service
	test -e $(DESTDIR)/etc/mailwarden/mailwarden.toml || install -m 0640 etc/mailwarden.toml $(DESTDIR)/etc/mailwarden/mailwarden.toml
	@echo "installed; next: $(PREFIX)/bin/mailwarden init && systemctl daemon-reload && systemctl enable --now mailwarden"
