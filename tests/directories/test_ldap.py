"""The LDAP directory against a real slapd: engine cases side by side with SQLite,
slappasswd-made hashes, qmail-ldap entries, rebind mode, and outages.

The directory contract itself (every Directory method) runs in
test_directory_contract.py; this module holds what is LDAP's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import ldap  # type: ignore[import-untyped]
import pytest
import pytest_asyncio

from mailwarden.app import build_engine
from mailwarden.auth.engine import Engine
from mailwarden.config import LdapConfig
from mailwarden.directories.base import Directory, PasswordChecker
from mailwarden.directories.ldap import LDAPDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.errors import DirectoryUnavailable, InvalidAccount
from mailwarden.hashing.pool import Hasher
from mailwarden.model import (
    Accepted,
    Account,
    AccountStatus,
    AppPassword,
    AppPasswordUsed,
    Denied,
    DenyReason,
    LastUse,
    Profile,
    Unavailable,
)
from tests.directories.conftest import add_subtree
from tests.helpers import FAST, attempt, hashed, make_config
from tests.slapd import (
    ROOT_DN,
    ROOT_PW,
    SERVICE_DN,
    SERVICE_PW,
    SUFFIX,
    Slapd,
    base_ldif,
    have_slapd,
    make_certificates,
    slappasswd,
)
from tests.test_engine import RecordingHasher

ACCOUNTS = [
    Account(
        uid="alice",
        mail="alice@example.org",
        alternate_addresses=("a.liddell@example.org",),
        password=hashed("secret"),
        home="/var/mail/alice",
    ),
    Account(uid="hatter", mail="hatter@example.org", password=hashed("tea"), master=True),
    Account(
        uid="dormouse",
        mail="dormouse@example.org",
        password=hashed("sleep"),
        status=AccountStatus.DISABLED,
    ),
    Account(
        uid="rabbit",
        mail="rabbit@example.org",
        password=hashed("late"),
        services={"pop3": False},
    ),
]


@pytest_asyncio.fixture(params=["sqlite", "ldap"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Directory]:
    """The same accounts in SQLite and in LDAP."""
    d: Directory
    if request.param == "ldap":
        d = await LDAPDirectory.open(request.getfixturevalue("ldap_config"))
    else:
        d = await SQLiteDirectory.open(tmp_path / "a.db", create=True)
    await d.bulk_upsert(ACCOUNTS, replace=False)
    yield d
    await d.close()


@pytest.fixture
def hasher() -> Iterator[Hasher]:
    h = Hasher(workers=2)
    yield h
    h.close()


def engine_on(
    d: Directory,
    hasher: Hasher,
    checker: PasswordChecker | None = None,
    **sections: dict[str, object],
) -> Engine:
    passwords = {"scheme": "SHA512-CRYPT", **sections.pop("passwords", {})}
    config = make_config(passwords=passwords, **sections) if sections or passwords else FAST
    return build_engine(config, directory=d, hasher=hasher, password_checker=checker)


# --------------------------------------------------------------------------- engine, side by side


@pytest.mark.parametrize("login", ["alice", "ALICE@example.org", "a.liddell@example.org"])
async def test_the_right_password_logs_in_by_any_login_on_both_backends(
    backend: Directory, hasher: Hasher, login: str
) -> None:
    outcome = await engine_on(backend, hasher).authenticate(attempt(login, "secret"))
    assert isinstance(outcome, Accepted)
    assert outcome.user == "alice"
    assert outcome.account.home == "/var/mail/alice"


async def test_unknown_user_and_wrong_password_are_the_same_denial_on_both_backends(
    backend: Directory, hasher: Hasher
) -> None:
    engine = engine_on(backend, hasher)
    wrong = await engine.authenticate(attempt("alice", "wrong"))
    unknown = await engine.authenticate(attempt("nobody", "secret"))
    assert wrong == unknown == Denied(reason=DenyReason.CREDENTIALS)


async def test_disabled_accounts_and_services_are_refused_on_both_backends(
    backend: Directory, hasher: Hasher
) -> None:
    engine = engine_on(backend, hasher)
    disabled = await engine.authenticate(attempt("dormouse", "sleep"))
    assert isinstance(disabled, Denied) and disabled.reason is DenyReason.DISABLED
    pop = await engine.authenticate(attempt("rabbit", "late", service="pop3"))
    assert isinstance(pop, Denied) and pop.reason is DenyReason.SERVICE_DISABLED
    assert isinstance(await engine.authenticate(attempt("rabbit", "late")), Accepted)


async def test_a_master_user_acts_as_the_target_on_both_backends(
    backend: Directory, hasher: Hasher
) -> None:
    engine = engine_on(backend, hasher, auth={"master_user_separator": "*"})
    outcome = await engine.authenticate(attempt("alice*hatter", "tea"))
    assert isinstance(outcome, Accepted)
    assert (outcome.user, outcome.master_user) == ("alice", "hatter")


async def test_lookup_gives_the_same_userdb_fields_on_both_backends(
    backend: Directory, hasher: Hasher, tmp_path: Path
) -> None:
    reference = await SQLiteDirectory.open(tmp_path / "ref.db", create=True)
    try:
        await reference.bulk_upsert(ACCOUNTS, replace=False)
        expected = await engine_on(reference, hasher).lookup("alice")
    finally:
        await reference.close()
    assert await engine_on(backend, hasher).lookup("alice") == expected


# --------------------------------------------------------------------------- LDAP's own


def _root_conn(server: Slapd) -> object:
    conn = ldap.initialize(server.url)
    conn.simple_bind_s(ROOT_DN, ROOT_PW)
    return conn


def _add_raw(server: Slapd, dn: str, attrs: dict[str, list[str]]) -> None:
    conn = _root_conn(server)
    try:
        conn.add_s(dn, [(k, [v.encode() for v in vs]) for k, vs in attrs.items()])  # type: ignore[attr-defined]
    finally:
        conn.unbind_s()  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", ["{SSHA}", "{CRYPT}", "{SMD5}", "{SHA}"])
async def test_userpassword_values_made_by_slappasswd_verify(
    slapd: Slapd, ldap_config: LdapConfig, hasher: Hasher, scheme: str
) -> None:
    value = slappasswd("wonderland", scheme)
    assert value.upper().startswith(scheme)
    _add_raw(
        slapd,
        f"uid=carol,{ldap_config.base_dn}",
        {
            "objectClass": ["account", "qmailUser"],
            "uid": ["carol"],
            "mail": ["carol@example.org"],
            "userPassword": [value],
        },
    )
    d = await LDAPDirectory.open(ldap_config)
    try:
        engine = engine_on(d, hasher, passwords={"rehash": "never"})
        assert isinstance(await engine.authenticate(attempt("carol", "wonderland")), Accepted)
        wrong = await engine.authenticate(attempt("carol", "Wonderland"))
        assert wrong == Denied(reason=DenyReason.CREDENTIALS)
    finally:
        await d.close()


@pytest.mark.parametrize(
    ("status", "imap", "pop3"),
    [("active", True, True), ("nopop", True, False), ("noaccess", False, False)],
)
async def test_qmail_ldap_account_status_maps_to_service_switches(
    slapd: Slapd, ldap_config: LdapConfig, status: str, imap: bool, pop3: bool
) -> None:
    _add_raw(
        slapd,
        f"uid=q,{ldap_config.base_dn}",
        {
            "objectClass": ["account", "qmailUser"],
            "uid": ["q"],
            "mail": ["q@example.org"],
            "accountStatus": [status],
            "mailQuotaSize": ["1000"],
            "qmailUID": ["42"],
        },
    )
    d = await LDAPDirectory.open(ldap_config)
    try:
        account = await d.get("q")
    finally:
        await d.close()
    assert account is not None
    assert account.status is AccountStatus.ACTIVE
    assert (account.service_enabled("imap"), account.service_enabled("pop3")) == (imap, pop3)
    assert (account.quota_bytes, account.uid_number) == (1000, 42)


async def test_missing_attributes_take_the_configured_defaults(
    slapd: Slapd, ldap_config: LdapConfig
) -> None:
    _add_raw(
        slapd,
        f"uid=d,{ldap_config.base_dn}",
        {"objectClass": ["account", "qmailUser"], "uid": ["d"], "mail": ["d@example.org"]},
    )
    config = dataclasses.replace(
        ldap_config,
        default_uid_number=8,
        default_gid_number=12,
        default_mail_location="maildir:/var/mail/%u",
        default_quota_bytes=5000,
    )
    d = await LDAPDirectory.open(config)
    try:
        account = await d.get("d")
    finally:
        await d.close()
    assert account is not None
    assert (account.uid_number, account.gid_number, account.mail_location, account.quota_bytes) == (
        8,
        12,
        "maildir:/var/mail/%u",
        5000,
    )


async def test_non_ascii_addresses_are_refused_but_unicode_names_round_trip(
    ldap_config: LdapConfig,
) -> None:
    d = await LDAPDirectory.open(ldap_config)
    try:
        with pytest.raises(InvalidAccount, match="ASCII"):
            await d.create(Account(uid="j", mail="jürgen@bücher.example"))
        account = Account(
            uid="jürgen",
            mail="juergen@example.org",
            password="{PLAIN}pässwörd ✓",
            profile=Profile(name="Jürgen Müller", postal_address="Straße 1"),
            passdb_fields={"reason": "Zurück ab 1.9."},
        )
        await d.create(account)
        assert await d.find("JÜRGEN") == account
    finally:
        await d.close()


async def test_rebind_mode_verifies_by_binding_as_the_user(
    ldap_config: LdapConfig, hasher: Hasher
) -> None:
    # slapd compares a userPassword without {SCHEME} as cleartext on bind, while the
    # engine (default_scheme CRYPT) cannot use it: only a real rebind accepts "pw".
    search_mode = await LDAPDirectory.open(ldap_config)
    try:
        await search_mode.create(Account(uid="eve", mail="eve@example.org", password="pw"))
        engine = engine_on(search_mode, hasher, passwords={"rehash": "never"})
        assert await engine.authenticate(attempt("eve", "pw")) == Denied(
            reason=DenyReason.CREDENTIALS
        )
    finally:
        await search_mode.close()
    d = await LDAPDirectory.open(dataclasses.replace(ldap_config, verify="rebind"))
    try:
        engine = engine_on(d, hasher, d, passwords={"rehash": "never"})
        assert isinstance(await engine.authenticate(attempt("eve@example.org", "pw")), Accepted)
        assert await engine.authenticate(attempt("eve", "nope")) == Denied(
            reason=DenyReason.CREDENTIALS
        )
        # An empty password would be an anonymous bind, which succeeds: refused first.
        assert await engine.authenticate(attempt("eve", "")) == Denied(
            reason=DenyReason.CREDENTIALS
        )
        assert await engine.authenticate(attempt("ghost", "pw")) == Denied(
            reason=DenyReason.CREDENTIALS
        )
    finally:
        await d.close()


async def test_rebind_mode_binds_for_unknown_users_too_instead_of_hashing(
    ldap_config: LdapConfig,
) -> None:
    # The unknown user must cost what a known one costs (a search and a bind), not
    # a dummy hash: otherwise the reply time would tell who has an account.
    recorder = RecordingHasher()
    d = await LDAPDirectory.open(dataclasses.replace(ldap_config, verify="rebind"))
    try:
        await d.create(Account(uid="zoe", password="pw"))
        engine = engine_on(d, recorder, d, passwords={"rehash": "never"})
        assert await engine.authenticate(attempt("ghost", "pw")) == Denied(
            reason=DenyReason.CREDENTIALS
        )
        assert isinstance(await engine.authenticate(attempt("zoe", "pw")), Accepted)
        assert recorder.verified == []
        assert await d.verify_password(None, b"pw") is False
    finally:
        await d.close()
        recorder.close()


async def test_password_change_is_a_compare_and_swap_in_one_modify(
    ldap_config: LdapConfig,
) -> None:
    d = await LDAPDirectory.open(ldap_config)
    try:
        await d.create(Account(uid="f", password="{PLAIN}one"))
        assert await d.set_password("f", "{PLAIN}two", expected="{PLAIN}one")
        assert not await d.set_password("f", "{PLAIN}three", expected="{PLAIN}one")
        account = await d.get("f")
        assert account is not None and account.password == "{PLAIN}two"
    finally:
        await d.close()


# --------------------------------------------------------------------------- outages


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A slapd of this test's own (it will be stopped and frozen), holding alice."""
    if not have_slapd():
        pytest.skip("slapd is not installed")
    server = Slapd(tmp_path / "s1", data_ldif=_data_with_alice())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _data_with_alice() -> str:
    return base_ldif() + (
        f"\ndn: uid=alice,ou=people,{SUFFIX}\nobjectClass: account\nobjectClass: qmailUser\n"
        f"objectClass: mailwardenAccount\nuid: alice\nmail: alice@example.org\n"
        f"userPassword: {hashed('secret')}\n"
    )


def _config(*servers: Slapd, timeout: float = 1.0, pool_size: int = 2) -> LdapConfig:
    return LdapConfig(
        servers=tuple(s.url for s in servers),
        base_dn=f"ou=people,{SUFFIX}",
        bind_dn=SERVICE_DN,
        bind_password=SERVICE_PW,
        timeout=timeout,
        pool_size=pool_size,
        backoff_max=0.5,
    )


async def test_slapd_stopped_mid_run_gives_only_temporary_failures_and_recovers(
    own_slapd: Slapd, hasher: Hasher
) -> None:
    d = await LDAPDirectory.open(_config(own_slapd))
    engine = engine_on(d, hasher, passwords={"rehash": "never"})
    try:
        assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)
        own_slapd.stop()
        for password in ("secret", "wrong") * 5:
            outcome = await engine.authenticate(attempt("alice", password))
            assert isinstance(outcome, Unavailable), outcome
        own_slapd.start()
        back = time.monotonic()
        recovered = None
        while time.monotonic() - back < 5.0:
            outcome = await engine.authenticate(attempt("alice", "secret"))
            assert not isinstance(outcome, Denied), outcome
            if isinstance(outcome, Accepted):
                recovered = time.monotonic() - back
                break
            await asyncio.sleep(0.1)
        assert recovered is not None, "no recovery within 5 s of slapd's return"
        wrong = await engine.authenticate(attempt("alice", "wrong"))
        assert wrong == Denied(reason=DenyReason.CREDENTIALS)
    finally:
        await d.close()


async def test_one_of_two_servers_down_is_invisible(tmp_path: Path, hasher: Hasher) -> None:
    if not have_slapd():
        pytest.skip("slapd is not installed")
    first = Slapd(tmp_path / "a", data_ldif=_data_with_alice())
    second = Slapd(tmp_path / "b", data_ldif=_data_with_alice())
    first.start()
    second.start()
    try:
        d = await LDAPDirectory.open(_config(first, second))
        engine = engine_on(d, hasher, passwords={"rehash": "never"})
        try:
            for i in range(40):
                if i == 10:
                    first.stop()
                if i == 25:
                    first.start()
                    second.stop()
                outcome = await engine.authenticate(attempt("alice", "secret"))
                assert isinstance(outcome, Accepted), (i, outcome)
        finally:
            await d.close()
    finally:
        first.stop()
        second.stop()


async def test_a_hung_slapd_times_out_into_a_temporary_failure(
    own_slapd: Slapd, hasher: Hasher
) -> None:
    timeout = 0.5
    d = await LDAPDirectory.open(_config(own_slapd, timeout=timeout))
    engine = engine_on(d, hasher, passwords={"rehash": "never"})
    try:
        own_slapd.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            outcome = await engine.authenticate(attempt("alice", "secret"))
            elapsed = time.monotonic() - started
        finally:
            own_slapd.signal(signal.SIGCONT)
        assert isinstance(outcome, Unavailable)
        assert elapsed < timeout + 0.3
    finally:
        await d.close()


async def test_a_directory_that_cannot_reach_any_server_does_not_open(tmp_path: Path) -> None:
    config = _config(timeout=0.5)
    config = dataclasses.replace(config, servers=("ldap://127.0.0.1:1/",))
    with pytest.raises(DirectoryUnavailable):
        await LDAPDirectory.open(config)


async def test_a_refused_service_bind_is_unavailable_not_a_crash(slapd: Slapd) -> None:
    config = dataclasses.replace(_config(slapd), bind_password="wrong", base_dn=add_subtree(slapd))
    with pytest.raises(DirectoryUnavailable, match="service account"):
        await LDAPDirectory.open(config)


async def test_entries_made_by_other_tools_keep_their_class_and_place_when_written(
    slapd: Slapd, ldap_config: LdapConfig
) -> None:
    conn = _root_conn(slapd)
    try:
        sub = f"ou=staff,{ldap_config.base_dn}"
        conn.add_s(sub, [("objectClass", [b"organizationalUnit"]), ("ou", [b"staff"])])  # type: ignore[attr-defined]
    finally:
        conn.unbind_s()  # type: ignore[attr-defined]
    _add_raw(
        slapd,
        f"uid=gina,{sub}",
        {
            "objectClass": ["inetOrgPerson", "qmailUser"],
            "uid": ["gina"],
            "cn": ["Gina"],
            "sn": ["G"],
            "mail": ["gina@example.org"],
            "accountStatus": ["nopop"],
        },
    )
    d = await LDAPDirectory.open(ldap_config)
    try:
        updated = await d.update("gina", {"master": True, "services": {"imap": False}})
        assert updated.master and not updated.service_enabled("imap")
        renamed = await d.update("gina", {"uid": "regina", "mail": None})
        assert await d.get("regina") == renamed
        assert await d.get("gina") is None
    finally:
        await d.close()
    conn = _root_conn(slapd)
    try:
        ((dn, entry),) = conn.search_s(sub, ldap.SCOPE_ONELEVEL, "(uid=regina)", ["objectClass"])  # type: ignore[attr-defined]
    finally:
        conn.unbind_s()  # type: ignore[attr-defined]
    assert dn == f"uid=regina,{sub}"
    classes = {c.decode().lower() for c in entry["objectClass"]}
    assert {"inetorgperson", "mailwardenaccount"} <= classes and "qmailuser" not in classes


async def test_starttls_verifies_the_server_certificate_against_the_ca_file(
    tmp_path: Path,
) -> None:
    if not have_slapd():
        pytest.skip("slapd is not installed")
    server = Slapd(tmp_path / "tls", data_ldif=_data_with_alice(), tls=True)
    assert server.certificates is not None
    ca = server.certificates[0]
    server.start()
    try:
        good = dataclasses.replace(_config(server), tls="starttls", ca_file=str(ca))
        d = await LDAPDirectory.open(good)
        try:
            account = await d.find("alice@example.org")
            assert account is not None and account.uid == "alice"
        finally:
            await d.close()
        # A CA that did not sign the server's certificate: no connection, no data.
        other_ca = make_certificates(_fresh(tmp_path / "other"))[0]
        bad = dataclasses.replace(good, ca_file=str(other_ca))
        with pytest.raises(DirectoryUnavailable, match="Connect error"):
            await LDAPDirectory.open(bad)
    finally:
        server.stop()


def _fresh(path: Path) -> Path:
    path.mkdir()
    return path


async def test_an_ldap_outage_logs_a_line_every_few_seconds_with_a_count(
    own_slapd: Slapd, hasher: Hasher, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage wrote a warning per request: 150 lines a second."""
    d = await LDAPDirectory.open(_config(own_slapd))
    engine = engine_on(d, hasher, passwords={"rehash": "never"})
    caplog.set_level(logging.INFO, logger="mailwarden.directory.ldap")
    try:
        assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)
        own_slapd.stop()
        for _ in range(150):
            outcome = await engine.authenticate(attempt("alice", "secret"))
            assert isinstance(outcome, Unavailable), outcome
        failures = [r for r in caplog.records if "failed; resting" in r.getMessage()]
        assert len(failures) == 1  # the next one after 10 s, with the count of the rest
        own_slapd.start()
        for _ in range(50):
            if isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted):
                break
            await asyncio.sleep(0.1)
        back = [r.getMessage() for r in caplog.records if "is back" in r.getMessage()]
        assert len(back) == 1
        left_out = int(back[0].split("(")[1].split()[0])
        assert left_out >= 149
    finally:
        await d.close()


async def test_app_passwords_live_in_their_own_auxiliary_class_as_json_values(
    slapd: Slapd, ldap_config: LdapConfig
) -> None:
    d = await LDAPDirectory.open(ldap_config)
    try:
        await d.create(Account(uid="hana", mail="hana@example.org"))
        app = AppPassword(id="p1", name="phone", digest="ab" * 32, services=("imap",), created=7)
        await d.update("hana", {"app_passwords": (app,), "app_passwords_only": True})
        use = LastUse(at=9, service="imap", remote_ip="192.0.2.1")
        await d.record_app_password_uses([AppPasswordUsed(uid="hana", app_password="p1", use=use)])
        found = await d.get("hana")
        assert found is not None and found.app_passwords_only
        assert found.app_passwords == (dataclasses.replace(app, last_used=use),)
    finally:
        await d.close()
    conn = _root_conn(slapd)
    try:
        ((_dn, entry),) = conn.search_s(  # type: ignore[attr-defined]
            ldap_config.base_dn,
            ldap.SCOPE_ONELEVEL,
            "(uid=hana)",
            ["objectClass", "mailwardenAppPassword", "mailwardenAppPasswordsOnly"],
        )
    finally:
        conn.unbind_s()  # type: ignore[attr-defined]
    assert "mailwardenapppasswords" in {c.decode().lower() for c in entry["objectClass"]}
    assert entry["mailwardenAppPasswordsOnly"] == [b"TRUE"]
    (value,) = entry["mailwardenAppPassword"]
    assert json.loads(value) == {
        "created": 7,
        "digest": "ab" * 32,
        "expires": None,
        "id": "p1",
        "last_used": {"at": 9, "remote_ip": "192.0.2.1", "service": "imap"},
        "name": "phone",
        "services": ["imap"],
    }
