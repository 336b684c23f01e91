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
# `make install` as root: mailwarden and its Python packages in $(PREFIX)/lib/mailwarden,
# the command $(PREFIX)/bin/mailwarden (a small launcher run by $(INSTALL_PYTHON)), the systemd
# unit, and /etc/mailwarden/mailwarden.toml if there is none (an existing one is kept).
# DESTDIR stages everything under another root (packaging, or a test): nothing in the
# files names DESTDIR, so the staged tree runs once it is copied to PREFIX.
# INSTALL_PYTHON is the interpreter the command runs with: the system's by default, which
# every user may run (Dovecot's auth user runs checkpassword; a Python under a private
# home would fail with status 126). The packages are built for it, in a throw-away venv.
# (Not PYTHON: scripts/bootstrap.sh takes that one from the environment for .venv.)
# WHEELS=DIR installs from a folder of wheels only (pip --no-index --find-links).
# Building python-ldap needs python3-venv, python3-dev, libldap2-dev, libsasl2-dev and
# gcc: `scripts/bootstrap.sh run` installs them.
PREFIX ?= /opt/mailwarden
DESTDIR ?=
SYSTEMD_DIR ?= /etc/systemd/system
INSTALL_PYTHON ?= /usr/bin/python3
WHEELS ?=
INSTALL_BUILD := $(CURDIR)/.cache/install-build
INSTALL_LIB = $(DESTDIR)$(PREFIX)/lib/mailwarden

.PHONY: install
install:
	rm -rf $(INSTALL_BUILD) $(INSTALL_LIB)
	$(INSTALL_PYTHON) -m venv $(INSTALL_BUILD)/venv
	umask 022 && $(INSTALL_BUILD)/venv/bin/pip install -q --disable-pip-version-check \
		$(if $(WHEELS),--no-index --find-links $(WHEELS)) --target $(INSTALL_LIB) .
	# pip --target's console scripts name the build venv: the launcher replaces them.
	# build/ is setuptools' scratch folder of that build.
	rm -rf $(INSTALL_LIB)/bin $(INSTALL_BUILD) build
	# Compiled again so that tracebacks name $(PREFIX), not the staging folder.
	umask 022 && $(INSTALL_PYTHON) -m compileall -q -f -j 0 -d $(PREFIX)/lib/mailwarden $(INSTALL_LIB)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/mailwarden $(DESTDIR)/etc/mailwarden $(DESTDIR)$(SYSTEMD_DIR)
	sed -e 's|@PYTHON@|$(INSTALL_PYTHON)|g' -e 's|@LIB@|$(PREFIX)/lib/mailwarden|g' scripts/launcher.in > $(DESTDIR)$(PREFIX)/bin/mailwarden
	chmod 0755 $(DESTDIR)$(PREFIX)/bin/mailwarden
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/mailwarden/README.md
	umask 022 && cp -r docs $(DESTDIR)$(PREFIX)/share/doc/mailwarden/
	sed 's|/opt/mailwarden|$(PREFIX)|g' etc/systemd/mailwarden.service > $(DESTDIR)$(SYSTEMD_DIR)/mailwarden.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_DIR)/mailwarden.service
	test -e $(DESTDIR)/etc/mailwarden/mailwarden.toml || install -m 0640 etc/mailwarden.toml $(DESTDIR)/etc/mailwarden/mailwarden.toml
	@echo "installed; next: $(PREFIX)/bin/mailwarden init && systemctl daemon-reload && systemctl enable --now mailwarden"
