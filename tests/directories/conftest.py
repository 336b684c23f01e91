"""Fixtures for directory tests: one real slapd per session, a fresh subtree per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from mailwarden.config import LdapConfig
from tests.slapd import ROOT_DN, ROOT_PW, SERVICE_DN, SERVICE_PW, SUFFIX, Slapd, have_slapd

_subtrees = itertools.count()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if not have_slapd():
        pytest.skip("slapd is not installed (scripts/bootstrap.sh installs it)")
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def add_subtree(server: Slapd) -> str:
    """A new, empty ``ou=`` under the suffix (added as the root DN); its DN."""
    import ldap  # type: ignore[import-untyped]

    ou = f"t{next(_subtrees)}"
    dn = f"ou={ou},{SUFFIX}"
    conn = ldap.initialize(server.url)
    try:
        conn.simple_bind_s(ROOT_DN, ROOT_PW)
        conn.add_s(dn, [("objectClass", [b"organizationalUnit"]), ("ou", [ou.encode()])])
    finally:
        conn.unbind_s()
    return dn


@pytest.fixture
def ldap_config(slapd: Slapd) -> LdapConfig:
    """A config for the session's slapd, on an empty subtree of its own."""
    return LdapConfig(
        servers=(slapd.url,),
        base_dn=add_subtree(slapd),
        bind_dn=SERVICE_DN,
        bind_password=SERVICE_PW,
        timeout=5.0,
    )
