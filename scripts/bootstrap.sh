#!/usr/bin/env bash
# Installs what mailwarden needs on a Debian machine: missing Debian packages (as root,
# via apt-get) and the project's virtualenv. Safe to run again: it only installs what
# is missing. Usage: scripts/bootstrap.sh [run|test]
#   run   - what `make run` needs (Python with venv)
#   test  - also the real peers the test suite starts (dovecot-core for doveadm, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
PY=${PYTHON:-python3}

# Debian packages per mode. The peers are started by the tests on private sockets and
# config dirs; they are never configured system-wide.
run_pkgs=(libldap2-dev libsasl2-dev gcc python3-dev)
test_pkgs=(dovecot-core postfix libsasl2-modules libnss-wrapper libdb5.3 libgnutls-dane0 libgnutls30 libidn12 libidn2-0 libldap-2.5-0 libmariadb3 libnsl2 libpam0g libpcre2-8-0 libperl5.36 libpq5 libsasl2-2 libspf2-2 libsqlite3-0 slapd ldap-utils openssl sasl2-bin pamtester libpam-modules dovecot-imapd dovecot-pop3d dovecot-auth-lua lua-cjson nginx libnginx-mod-mail redis-server gpg gpg-agent chromium chromium-driver postgresql mariadb-server dovecot-pgsql dovecot-mysql redis-sentinel dovecot-ldap curl)

need=()
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need+=(python3-venv)
fi
pkgs=("${run_pkgs[@]}")
if [ "$mode" = test ]; then
    pkgs+=("${test_pkgs[@]}")
fi
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
# Node and npm for the OpenID provider the OAuth2 tests start (below), from Debian
# only when the machine has none (a NodeSource node brings its own npm).
if [ "$mode" = test ] && ! command -v npm >/dev/null 2>&1; then
    need+=(nodejs npm)
fi

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: missing Debian packages: ${need[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "bootstrap: installing ${need[*]}" >&2
    # Packages like dovecot-core would start their system service on install. The tests
    # run private instances; a system-wide daemon is not wanted, so service starts are
    # refused for the duration of the install (the standard policy-rc.d mechanism),
    # unless the machine already has its own policy.
    added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    trap '[ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    # postfix asks how to configure the system's mail: "No configuration" leaves
    # /etc/postfix alone (the tests run Postfix from private config dirs).
    if [[ " ${need[*]} " == *" postfix "* ]]; then
        echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi

# The virtualenv, rebuilt when pyproject.toml changes.
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.stamp-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    rm -f .venv/.stamp-*
    touch "$stamp"
fi

# The OpenID provider the OAuth2 tests start (tests/peers/test_oauth2.py): node
# oidc-provider as pinned by tests/peers/oidc/package-lock.json, installed with `npm ci`
# into .cache/ (one folder per lock file), only when it is not there yet.
if [ "$mode" = test ]; then
    lock=tests/peers/oidc/package-lock.json
    oidc=.cache/oidc-provider-$(sha256sum "$lock" | cut -c1-16)
    if [ ! -e "$oidc/node_modules/oidc-provider/package.json" ]; then
        rm -rf "$oidc"
        mkdir -p "$oidc"
        cp tests/peers/oidc/package.json "$lock" "$oidc/"
        npm ci --prefix "$oidc" --no-audit --no-fund --loglevel=error </dev/null
    fi
fi
