"""The Directory contract: every backend must pass every test here.

The ``directory`` fixture runs each test against :class:`MemoryDirectory` (the
reference semantics), :class:`SQLiteDirectory`, :class:`LDAPDirectory` (on a
real slapd, see tests/directories/conftest.py) and :class:`OwnDirectory` on real
PostgreSQL and MariaDB servers (tests/conftest.py). A backend-specific behaviour
belongs in that backend's own test module, not here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.auth import tokens
from mailwarden.directories.base import BulkReport, Directory
from mailwarden.directories.ldap import LDAPDirectory
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.directories.sql.own import OwnDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.errors import AccountExists, AccountNotFound, DirectoryUnavailable, InvalidAccount
from mailwarden.model import (
    Account,
    AccountStatus,
    AppPassword,
    AppPasswordUsed,
    LastUse,
    Listed,
    Profile,
)
from tests.conftest import sql_config_for


@pytest_asyncio.fixture(
    params=["memory", "sqlite", "sqlite-cached", "ldap", "postgresql", "mariadb"]
)
async def directory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Directory]:
    backend: Directory
    if request.param == "memory":
        backend = MemoryDirectory()
    elif request.param == "ldap":
        backend = await LDAPDirectory.open(request.getfixturevalue("ldap_config"))
    elif request.param in ("postgresql", "mariadb"):
        # The own schema (sql.mode = "own") on a fresh database of a real server.
        server = request.getfixturevalue(
            f"{request.param.replace('postgresql', 'postgres')}_server"
        )
        config = sql_config_for(server, server.create_database())
        backend = await OwnDirectory.open(config, password=config.password, create=True)
    else:
        # sqlite-cached: every contract test also holds with the login cache on.
        cache = 1000 if request.param == "sqlite-cached" else 0
        backend = await SQLiteDirectory.open(
            tmp_path / "accounts.db", create=True, cache_size=cache
        )
    yield backend
    await backend.close()


def full_account(uid: str = "alice", **changes: Any) -> Account:
    """An account with every field set to something other than its default."""
    account = Account(
        uid=uid,
        mail=f"{uid}@example.org",
        alternate_addresses=(f"{uid}.alt@example.org", f"{uid}@example.net"),
        password="{SHA512-CRYPT}$6$salt$hash",
        status=AccountStatus.DISABLED,
        services=MappingProxyType({"pop3": False, "imap": False, "smtp": True}),
        mail_host="mx2.example.org",
        home=f"/var/mail/{uid}",
        mail_location="maildir:~/Maildir",
        uid_number=5000,
        gid_number=5001,
        quota_bytes=2 * 1024**3,
        quota_messages=100_000,
        master=True,
        allow_nets=("192.0.2.0/24", "local"),
        passdb_fields=MappingProxyType({"nodelay": "", "reason": "Moved"}),
        userdb_fields=MappingProxyType({"quota_rule2": "Trash:storage=+100M", "nice": "10"}),
        pgp_fingerprint="0123456789ABCDEF0123456789ABCDEF01234567",
        ssh_keys=("ssh-ed25519 AAAAC3Nza alice@laptop", "ssh-rsa AAAAB3Nza alice@desk"),
        dns_records=(f"{uid} IN A 192.0.2.1", f'{uid} IN TXT "a, b"'),
        profile=Profile(
            name="Alice Liddell",
            c="GB",
            l="Oxford",
            telephone_number="+44 1865 000000",
            facsimile_telephone_number="+44 1865 000001",
            postal_address="Christ Church$Oxford",
            postal_code="OX1 1DP",
            login_shell="/bin/zsh",
            email_forward="alice@elsewhere.example",
            irc_nick="alice",
            on_vacation="Through the looking glass",
            labeled_uri="https://example.org/~alice",
            latitude="51.75",
            longitude="-1.25",
        ),
        app_passwords=(
            app_password("p1", "phone", services=("imap", "smtp"), created=1_700_000_000),
            app_password(
                "l2",
                "laptop Thunderbird",
                expires=1_900_000_000,
                created=1_700_000_100,
                last_used=LastUse(at=1_700_000_200, service="imap", remote_ip="2001:db8::1"),
            ),
        ),
        app_passwords_only=True,
    )
    return dataclasses.replace(account, **changes)


def app_password(app_id: str, name: str, **fields: Any) -> AppPassword:
    """An app password whose value is ``mwa_`` and 24 times the id's first letter."""
    value = "mwa_" + app_id[0] * 24
    digest = tokens.digest(tokens.TokenKind.APP_PASSWORD, value)
    return AppPassword(id=app_id, name=name, digest=digest, **fields)


# --------------------------------------------------------------------------- find


async def test_an_account_is_found_by_uid_mail_and_each_alternate_address(
    directory: Directory,
) -> None:
    account = full_account()
    await directory.create(account)
    for login in ("alice", "alice@example.org", "alice.alt@example.org", "alice@example.net"):
        assert await directory.find(login) == account


async def test_find_ignores_case_and_returns_names_as_stored(directory: Directory) -> None:
    await directory.create(Account(uid="Alice", mail="Alice.Liddell@Example.org"))
    for login in ("alice", "ALICE", "alice.liddell@example.ORG"):
        found = await directory.find(login)
        assert found is not None
        assert (found.uid, found.mail) == ("Alice", "Alice.Liddell@Example.org")


async def test_find_of_an_unknown_login_is_none(directory: Directory) -> None:
    await directory.create(full_account())
    assert await directory.find("bob") is None
    assert await directory.find("alic") is None
    assert await directory.find("") is None


async def test_by_restricts_which_attributes_are_searched(directory: Directory) -> None:
    account = full_account()
    await directory.create(account)
    assert await directory.find("alice", by=("mail", "alternate")) is None
    assert await directory.find("alice@example.org", by=("uid",)) is None
    assert await directory.find("alice@example.org", by=("alternate",)) is None
    assert await directory.find("alice@example.org", by=("mail",)) == account
    assert await directory.find("alice@example.net", by=("mail",)) is None
    assert await directory.find("alice@example.net", by=("alternate",)) == account
    assert await directory.find("alice", by=()) is None


async def test_uid_wins_over_another_accounts_address(directory: Directory) -> None:
    owner = Account(uid="shared@example.org")
    other = Account(uid="bob", mail="shared@example.org")
    await directory.create(owner)
    await directory.create(other)
    assert await directory.find("shared@example.org") == owner
    assert await directory.find("SHARED@example.org", by=("mail", "alternate")) == other


async def test_uid_wins_over_another_accounts_alternate_address(directory: Directory) -> None:
    other = Account(uid="bob", alternate_addresses=("postmaster",))
    owner = Account(uid="postmaster")
    await directory.create(other)
    await directory.create(owner)
    assert await directory.find("postmaster") == owner
    assert await directory.find("postmaster", by=("alternate",)) == other


async def test_an_account_whose_mail_equals_its_uid_is_found_once(directory: Directory) -> None:
    account = Account(uid="alice@example.org", mail="Alice@example.org")
    await directory.create(account)
    assert await directory.find("alice@example.org") == account
    assert await directory.search("alice*") == [account]


async def test_get_matches_the_uid_only_ignoring_case(directory: Directory) -> None:
    account = full_account()
    await directory.create(account)
    assert await directory.get("ALICE") == account
    assert await directory.get("alice@example.org") is None


async def test_get_many_returns_the_accounts_asked_for_in_that_order_each_once(
    directory: Directory,
) -> None:
    alice, bob, carol = full_account(), full_account("bob"), full_account("carol")
    await directory.bulk_upsert([alice, bob, carol], replace=False)
    asked = ["carol", "nobody", "ALICE", "alice", "bob@example.org"]
    assert await directory.get_many(asked) == [carol, alice]
    assert await directory.get_many([]) == []


async def test_get_many_reads_a_batch_larger_than_one_search_filter(directory: Directory) -> None:
    accounts = [Account(uid=f"u{i:04d}", mail=f"u{i}@example.org") for i in range(1200)]
    await directory.bulk_upsert(accounts, replace=False)
    assert await directory.get_many([a.uid for a in reversed(accounts)]) == accounts[::-1]


# --------------------------------------------------------------------------- create


async def test_creating_a_taken_uid_raises_account_exists(directory: Directory) -> None:
    await directory.create(Account(uid="alice"))
    with pytest.raises(AccountExists, match="'ALICE'"):
        await directory.create(Account(uid="ALICE", mail="other@example.org"))
    assert await directory.find("other@example.org") is None
    assert await directory.count() == 1


@pytest.mark.parametrize(
    "clashing",
    [
        Account(uid="bob", mail="ALICE@example.org"),
        Account(uid="bob", mail="alice.alt@example.org"),
        Account(uid="bob", alternate_addresses=("bob@x.org", "alice@example.org")),
        Account(uid="bob", alternate_addresses=("Alice@Example.NET",)),
    ],
    ids=["mail-vs-mail", "mail-vs-alternate", "alternate-vs-mail", "alternate-vs-alternate"],
)
async def test_creating_with_a_taken_address_raises_account_exists_naming_it(
    directory: Directory, clashing: Account
) -> None:
    await directory.create(full_account())
    with pytest.raises(AccountExists, match=r"(?i)alice(\.alt)?@example\.(org|net)'.*'alice'"):
        await directory.create(clashing)
    assert await directory.get("bob") is None
    assert await directory.find("bob@x.org") is None
    assert await directory.count() == 1


async def test_an_account_listing_an_address_twice_is_invalid(directory: Directory) -> None:
    with pytest.raises(InvalidAccount, match="twice"):
        await directory.create(
            Account(uid="bob", mail="bob@example.org", alternate_addresses=("BOB@example.org",))
        )
    assert await directory.count() == 0


@pytest.mark.parametrize(
    ("account", "message"),
    [
        (Account(uid=""), "uid"),
        (Account(uid="alice smith"), "uid"),
        (Account(uid="alice\n"), "uid"),
        (Account(uid="alice", mail=""), "address"),
        (Account(uid="alice", alternate_addresses=("a b@example.org",)), "address"),
        (Account(uid="alice", quota_bytes=-1), "quota_bytes"),
        (Account(uid="alice", uid_number=2**63), "uid_number"),
        (Account(uid="alice", services={"IMAP": False}), "lower case"),
        (Account(uid="alice", services={"imap": 0}), "bool"),  # type: ignore[dict-item]
        (Account(uid="alice", alternate_addresses="a@x"), "tuple"),  # type: ignore[arg-type]
        (Account(uid="alice", password="\udcff"), "Unicode"),
        (Account(uid="alice", status="disabled"), "AccountStatus"),  # type: ignore[arg-type]
        (Account(uid="alice", passdb_fields={"": "x"}), "non-empty"),
    ],
)
async def test_invalid_field_values_are_refused(
    directory: Directory, account: Account, message: str
) -> None:
    with pytest.raises(InvalidAccount, match=message):
        await directory.create(account)
    with pytest.raises(InvalidAccount, match=message):
        await directory.bulk_upsert([Account(uid="zed"), account], replace=True)
    assert await directory.count() == 0


# --------------------------------------------------------------------------- round trip


async def test_every_account_field_round_trips_through_create(directory: Directory) -> None:
    account = full_account()
    await directory.create(account)
    found = await directory.find("alice")
    assert found == account
    assert found is not None
    # Order matters for lists that an administrator sees and edits.
    assert found.alternate_addresses == account.alternate_addresses
    assert found.ssh_keys == account.ssh_keys
    assert found.dns_records == account.dns_records
    assert found.allow_nets == account.allow_nets


async def test_find_by_fingerprint_ignores_case_and_spaces(directory: Directory) -> None:
    await directory.create(full_account())
    await directory.create(Account(uid="bob", pgp_fingerprint="FEDC" * 10))
    await directory.create(Account(uid="carol"))
    fpr = "0123456789ABCDEF0123456789ABCDEF01234567"
    found = await directory.find_by_fingerprint(fpr.lower())
    assert [a.uid for a in found] == ["alice"]
    spaced = " ".join(fpr[i : i + 4] for i in range(0, 40, 4))
    assert [a.uid for a in await directory.find_by_fingerprint(spaced)] == ["alice"]
    assert [a.uid for a in await directory.find_by_fingerprint("FEDC" * 10)] == ["bob"]
    assert await directory.find_by_fingerprint("AB" * 20) == []


async def test_every_account_field_round_trips_through_replace_and_bulk_upsert(
    directory: Directory,
) -> None:
    await directory.create(Account(uid="alice"))
    await directory.replace(full_account())
    assert await directory.get("alice") == full_account()
    await directory.bulk_upsert([full_account("bob")], replace=False)
    assert await directory.get("bob") == full_account("bob")


async def test_default_account_round_trips(directory: Directory) -> None:
    account = Account(uid="minimal")
    await directory.create(account)
    assert await directory.get("minimal") == account


async def test_unicode_values_round_trip(directory: Directory) -> None:
    if isinstance(directory, LDAPDirectory):
        pytest.skip("LDAP mail attributes are IA5 (ASCII): see test_ldap.py")
    account = Account(
        uid="jürgen",
        mail="jürgen@bücher.example",
        password="{PLAIN}pässwörd ✓",
        profile=Profile(name="Jürgen Müller", postal_address="Straße 1"),
        passdb_fields={"reason": "Zurück ab 1.9."},
    )
    await directory.create(account)
    assert await directory.find("JÜRGEN@BÜCHER.EXAMPLE") == account


async def test_a_stored_account_does_not_change_with_the_callers_dicts(
    directory: Directory,
) -> None:
    services = {"imap": False}
    await directory.create(Account(uid="alice", services=services))
    services["pop3"] = False
    found = await directory.get("alice")
    assert found is not None
    assert dict(found.services) == {"imap": False}
    with pytest.raises(TypeError):
        found.services["smtp"] = False  # type: ignore[index]


# --------------------------------------------------------------------------- replace / update


async def test_replace_overwrites_every_field(directory: Directory) -> None:
    await directory.create(full_account())
    await directory.replace(Account(uid="ALICE", password="{PLAIN}new"))
    assert await directory.get("alice") == Account(uid="ALICE", password="{PLAIN}new")


async def test_replace_of_an_unknown_uid_raises_account_not_found(directory: Directory) -> None:
    with pytest.raises(AccountNotFound):
        await directory.replace(Account(uid="nobody"))
    assert await directory.count() == 0


async def test_replace_frees_the_addresses_the_account_no_longer_has(
    directory: Directory,
) -> None:
    await directory.create(full_account())
    await directory.replace(full_account(alternate_addresses=()))
    assert await directory.find("alice.alt@example.org") is None
    await directory.create(Account(uid="bob", mail="alice.alt@example.org"))
    found = await directory.find("alice.alt@example.org")
    assert found is not None
    assert found.uid == "bob"


async def test_replace_that_clashes_leaves_the_account_unchanged(directory: Directory) -> None:
    await directory.create(full_account())
    await directory.create(Account(uid="bob", mail="bob@example.org"))
    with pytest.raises(AccountExists, match=r"bob@example\.org"):
        await directory.replace(Account(uid="alice", mail="bob@example.org"))
    assert await directory.get("alice") == full_account()


async def test_modify_applies_the_change_to_the_account_as_stored_now(
    directory: Directory,
) -> None:
    await directory.create(full_account())
    # Written after the caller could have read the account: modify must see it.
    assert await directory.set_password("alice", "{PLAIN}new")
    done = await directory.modify("alice", lambda a: dataclasses.replace(a, home="/elsewhere"))
    assert done.before == full_account(password="{PLAIN}new")
    assert done.after == full_account(password="{PLAIN}new", home="/elsewhere")
    assert await directory.get("alice") == done.after


async def test_modify_of_an_unknown_uid_or_a_failing_change_writes_nothing(
    directory: Directory,
) -> None:
    await directory.create(full_account())

    def refuse(account: Account) -> Account:
        raise InvalidAccount("no")

    with pytest.raises(AccountNotFound):
        await directory.modify("nobody", lambda a: a)
    with pytest.raises(InvalidAccount):
        await directory.modify("alice", refuse)
    with pytest.raises(InvalidAccount):
        await directory.modify("alice", lambda a: dataclasses.replace(a, uid_number=-1))
    assert await directory.get("alice") == full_account()


async def test_bulk_upsert_can_skip_refused_accounts_and_write_the_rest(
    directory: Directory,
) -> None:
    await directory.create(Account(uid="a", mail="x@example.org"))
    await directory.create(Account(uid="d", mail="y@example.org"))
    batch = [
        Account(uid="b", mail="X@example.org"),  # taken by a
        Account(uid="c", mail="z@example.org"),
        Account(uid="a", mail="y@example.org", home="/new"),  # taken by d
    ]
    with pytest.raises(AccountExists):
        await directory.bulk_upsert(batch, replace=True)
    assert await directory.count() == 2
    report = await directory.bulk_upsert(batch, replace=True, skip_refused=True)
    assert (report.created, report.replaced, report.skipped) == (1, 0, 0)
    assert [(r.uid, "already belongs to" in r.message) for r in report.refused] == [
        ("a", True),
        ("b", True),
    ]
    assert await directory.get("a") == Account(uid="a", mail="x@example.org")  # kept as it was
    assert await directory.get("b") is None
    assert await directory.get("c") == Account(uid="c", mail="z@example.org")


async def test_bulk_upsert_skipping_refused_reports_an_invalid_account_too(
    directory: Directory,
) -> None:
    await directory.create(Account(uid="a"))
    batch = [Account(uid="a", home="/new"), Account(uid="bad", uid_number=-1)]
    report = await directory.bulk_upsert(batch, replace=True, skip_refused=True)
    assert (report.created, report.replaced) == (0, 1)
    assert [r.uid for r in report.refused] == ["bad"]
    assert await directory.get("bad") is None


async def test_update_changes_only_the_given_fields(directory: Directory) -> None:
    await directory.create(full_account())
    new = await directory.update(
        "ALICE",
        {
            "status": "active",
            "alternate_addresses": ["third@example.org"],
            "services": {"imap": False},
            "profile": {"name": "Alice L."},
            "quota_bytes": None,
        },
    )
    expected = full_account(
        status=AccountStatus.ACTIVE,
        alternate_addresses=("third@example.org",),
        services={"imap": False},
        profile=Profile(name="Alice L."),
        quota_bytes=None,
    )
    assert new == expected
    assert await directory.get("alice") == expected
    assert await directory.find("alice.alt@example.org") is None
    assert await directory.find("third@example.org") == expected


async def test_update_can_rename_the_uid(directory: Directory) -> None:
    await directory.create(full_account())
    await directory.update("alice", {"uid": "alice2"})
    assert await directory.get("alice") is None
    found = await directory.find("alice@example.org")
    assert found is not None
    assert found.uid == "alice2"


async def test_update_to_a_taken_uid_raises_and_changes_nothing(directory: Directory) -> None:
    await directory.create(full_account())
    await directory.create(Account(uid="bob"))
    with pytest.raises(AccountExists, match="'Bob'"):
        await directory.update("alice", {"uid": "Bob", "password": "x"})
    assert await directory.get("alice") == full_account()
    assert await directory.get("bob") == Account(uid="bob")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "blue"}, "colour"),
        ({"status": "frozen"}, "frozen"),
        ({"profile": {"shoe_size": "7"}}, "shoe_size"),
        ({"quota_bytes": -5}, "quota_bytes"),
        ({"mail": "bob@example.org", "alternate_addresses": ["bob@example.org"]}, "twice"),
    ],
)
async def test_update_with_an_invalid_change_raises_and_changes_nothing(
    directory: Directory, changes: dict[str, Any], message: str
) -> None:
    await directory.create(full_account())
    with pytest.raises(InvalidAccount, match=message):
        await directory.update("alice", changes)
    assert await directory.get("alice") == full_account()


async def test_update_of_an_unknown_uid_raises_account_not_found(directory: Directory) -> None:
    with pytest.raises(AccountNotFound):
        await directory.update("nobody", {"password": "x"})


# --------------------------------------------------------------------------- set_password


async def test_set_password_without_expected_always_writes(directory: Directory) -> None:
    await directory.create(full_account())
    assert await directory.set_password("ALICE", "{PLAIN}new") is True
    assert await directory.get("alice") == full_account(password="{PLAIN}new")


async def test_set_password_wins_when_the_stored_value_is_the_expected_one(
    directory: Directory,
) -> None:
    await directory.create(full_account())
    old = full_account().password
    assert await directory.set_password("alice", "{ARGON2ID}new", expected=old) is True
    found = await directory.get("alice")
    assert found is not None
    assert found.password == "{ARGON2ID}new"


async def test_set_password_loses_when_the_password_changed_meanwhile(
    directory: Directory,
) -> None:
    await directory.create(full_account())
    old = full_account().password
    await directory.set_password("alice", "{PLAIN}changed-by-user")
    assert await directory.set_password("alice", "{ARGON2ID}rehash", expected=old) is False
    found = await directory.get("alice")
    assert found is not None
    assert found.password == "{PLAIN}changed-by-user"


async def test_set_password_of_an_unknown_uid_writes_nothing(directory: Directory) -> None:
    await directory.create(Account(uid="alice@example.org"))
    assert await directory.set_password("nobody", "x") is False
    # An address is not a uid: set_password names accounts by uid only.
    await directory.create(Account(uid="bob", mail="bob@example.org"))
    assert await directory.set_password("bob@example.org", "x") is False
    assert await directory.get("bob") == Account(uid="bob", mail="bob@example.org")


# --------------------------------------------------------------------------- delete


async def test_delete_removes_the_account_and_frees_its_logins(directory: Directory) -> None:
    await directory.create(full_account())
    assert await directory.delete("Alice") is True
    for login in ("alice", "alice@example.org", "alice.alt@example.org"):
        assert await directory.find(login) is None
    assert await directory.count() == 0
    await directory.create(full_account())
    assert await directory.get("alice") == full_account()


async def test_delete_of_an_unknown_uid_is_false(directory: Directory) -> None:
    await directory.create(Account(uid="alice", mail="alice@example.org"))
    assert await directory.delete("bob") is False
    assert await directory.delete("alice@example.org") is False
    assert await directory.count() == 1


# --------------------------------------------------------------------- iterate / search / count


async def test_iterate_yields_every_uid_once_in_ascending_order(directory: Directory) -> None:
    for uid in ("carol", "Alice", "bob", "alice2"):
        await directory.create(Account(uid=uid))
    assert [uid async for uid in directory.iterate()] == ["Alice", "alice2", "bob", "carol"]


async def test_iterate_covers_thousands_of_accounts(directory: Directory) -> None:
    uids = [f"user{n:05d}" for n in range(2500)]
    await directory.bulk_upsert((Account(uid=uid) for uid in reversed(uids)), replace=False)
    assert [uid async for uid in directory.iterate()] == uids


async def test_iterate_of_an_empty_directory_yields_nothing(directory: Directory) -> None:
    assert [uid async for uid in directory.iterate()] == []


async def test_sample_reads_only_as_many_whole_accounts_as_asked(directory: Directory) -> None:
    uids = [f"user{n:05d}" for n in range(1200)]
    stored = {
        uid: Account(uid=uid, mail=f"{uid}@example.org", password=f"{{PLAIN}}pw-{uid}")
        for uid in uids
    }
    await directory.bulk_upsert(stored.values(), replace=False)
    some = await directory.sample(7)
    assert len(some) == 7 and len({a.uid for a in some}) == 7
    for account in some:  # whole accounts, as stored (the dummy hash reads the password)
        assert account.password == stored[account.uid].password
        assert account.mail == stored[account.uid].mail
    assert len(await directory.sample(5000)) == 1200
    assert await directory.sample(0) == []


async def test_search_matches_star_and_question_mark_against_uid_and_addresses(
    directory: Directory,
) -> None:
    alice = full_account()
    bob = Account(uid="bob", mail="bob@example.net")
    carol = Account(uid="carol", alternate_addresses=("c@example.org",))
    for account in (carol, bob, alice):
        await directory.create(account)
    assert await directory.search("*@EXAMPLE.org") == [alice, carol]
    assert await directory.search("*@example.net") == [alice, bob]
    assert await directory.search("?ob") == [bob]
    assert await directory.search("b?b@*") == [bob]
    assert await directory.search("bob") == [bob]
    assert await directory.search("bo") == []
    assert await directory.search("*") == [alice, bob, carol]


async def test_search_takes_other_characters_literally(directory: Directory) -> None:
    odd = Account(uid="we[ird]", mail="100%.real_user@example.org")
    await directory.create(odd)
    await directory.create(Account(uid="wei", mail="100x.realXuser@example.org"))
    assert await directory.search("we[ird]") == [odd]
    assert await directory.search("we[i]*") == []
    assert await directory.search("100%.real_user@*") == [odd]


async def test_search_returns_at_most_limit_accounts_in_uid_order(directory: Directory) -> None:
    for n in (3, 1, 2, 0):
        await directory.create(Account(uid=f"user{n}"))
    found = await directory.search("user*", limit=2)
    assert [a.uid for a in found] == ["user0", "user1"]
    assert await directory.search("user*", limit=0) == []


async def listed(directory: Directory, pattern: str = "*") -> list[Listed]:
    return [item async for item in directory.listing(pattern)]


async def test_the_listing_matches_as_search_does_and_shows_the_list_columns(
    directory: Directory,
) -> None:
    alice = full_account()
    bob = Account(uid="bob", mail="bob@example.net")
    carol = Account(uid="carol", alternate_addresses=("c@example.org",))
    for account in (carol, bob, alice):
        await directory.create(account)
    for pattern in ("*@EXAMPLE.org", "*@example.net", "?ob", "bob", "bo", "*", "c@*"):
        expected = [Listed.of(a) for a in await directory.search(pattern)]
        assert await listed(directory, pattern) == expected, pattern
    assert (await listed(directory, "alice"))[0] == Listed(
        uid="alice",
        mail="alice@example.org",
        status=AccountStatus.DISABLED,
        mail_host="mx2.example.org",
        services_off=("imap", "pop3"),
    )


async def test_the_listing_takes_other_characters_literally(directory: Directory) -> None:
    odd = Account(uid="we[ird]", mail="100%.real_user@example.org")
    await directory.create(odd)
    await directory.create(Account(uid="wei", mail="100x.realXuser@example.org"))
    assert await listed(directory, "we[ird]") == [Listed.of(odd)]
    assert await listed(directory, "we[i]*") == []
    assert await listed(directory, "100%.real_user@*") == [Listed.of(odd)]


async def test_the_listing_streams_thousands_of_accounts_in_uid_order(directory: Directory) -> None:
    uids = [f"user{n:05d}" for n in range(2500)]
    await directory.bulk_upsert((Account(uid=uid) for uid in reversed(uids)), replace=False)
    assert [item.uid for item in await listed(directory)] == uids
    assert [item.uid for item in await listed(directory, "user01*")] == uids[1000:2000]
    assert await listed(directory, "nobody*") == []


async def test_count_follows_creates_and_deletes(directory: Directory) -> None:
    assert await directory.count() == 0
    await directory.create(Account(uid="a"))
    await directory.create(Account(uid="b"))
    assert await directory.count() == 2
    await directory.delete("a")
    assert await directory.count() == 1


# --------------------------------------------------------------------------- bulk_upsert


async def test_bulk_upsert_without_replace_skips_existing_uids(directory: Directory) -> None:
    await directory.create(Account(uid="alice", password="old"))
    report = await directory.bulk_upsert(
        [Account(uid="ALICE", password="new"), Account(uid="bob"), Account(uid="carol")],
        replace=False,
    )
    assert report == BulkReport(created=2, replaced=0, skipped=1)
    assert await directory.get("alice") == Account(uid="alice", password="old")
    assert await directory.count() == 3


async def test_bulk_upsert_with_replace_overwrites_existing_uids(directory: Directory) -> None:
    await directory.create(full_account())
    report = await directory.bulk_upsert(
        [Account(uid="alice", password="new"), Account(uid="bob")], replace=True
    )
    assert report == BulkReport(created=1, replaced=1, skipped=0)
    assert await directory.get("alice") == Account(uid="alice", password="new")
    assert await directory.find("alice@example.org") is None


async def test_bulk_upsert_keeps_the_last_of_a_uid_given_twice_only_with_replace(
    directory: Directory,
) -> None:
    batch = [Account(uid="alice", password="first"), Account(uid="Alice", password="second")]
    assert await directory.bulk_upsert(batch, replace=False) == BulkReport(created=1, skipped=1)
    assert await directory.get("alice") == batch[0]
    assert await directory.bulk_upsert(batch, replace=True) == BulkReport(replaced=2)
    assert await directory.get("alice") == batch[1]


async def test_bulk_upsert_writes_nothing_when_one_account_clashes(directory: Directory) -> None:
    await directory.create(Account(uid="owner", mail="taken@example.org"))
    batch = [
        Account(uid="a", mail="a@example.org"),
        Account(uid="owner", password="replaced"),
        Account(uid="b", alternate_addresses=("taken@example.org",)),
        Account(uid="c"),
    ]
    with pytest.raises(AccountExists, match=r"taken@example\.org"):
        await directory.bulk_upsert(batch, replace=False)
    with pytest.raises(AccountExists, match=r"taken@example\.org"):
        await directory.bulk_upsert(batch[2:], replace=True)
    assert [uid async for uid in directory.iterate()] == ["owner"]
    assert await directory.get("owner") == Account(uid="owner", mail="taken@example.org")


async def test_bulk_upsert_detects_clashes_inside_the_batch(directory: Directory) -> None:
    batch = [Account(uid="a", mail="x@example.org"), Account(uid="b", mail="X@example.org")]
    with pytest.raises(AccountExists, match=r"X@example\.org"):
        await directory.bulk_upsert(batch, replace=True)
    assert await directory.count() == 0


async def test_bulk_upsert_can_move_an_address_between_replaced_accounts(
    directory: Directory,
) -> None:
    await directory.create(Account(uid="a", mail="moving@example.org"))
    await directory.create(Account(uid="b"))
    # The taker comes first: clashes are judged on the outcome, not on the order.
    batch = [Account(uid="b", mail="moving@example.org"), Account(uid="a")]
    assert await directory.bulk_upsert(batch, replace=True) == BulkReport(replaced=2)
    found = await directory.find("moving@example.org")
    assert found is not None
    assert found.uid == "b"


async def test_bulk_upsert_judges_an_address_on_the_last_account_given_for_a_uid(
    directory: Directory,
) -> None:
    batch = [
        Account(uid="a", mail="x@example.org"),
        Account(uid="b", mail="x@example.org"),
        Account(uid="a", mail="a@example.org"),
    ]
    assert await directory.bulk_upsert(batch, replace=True) == BulkReport(created=2, replaced=1)
    found = await directory.find("x@example.org")
    assert found is not None
    assert found.uid == "b"
    with pytest.raises(AccountExists, match=r"x@example\.org"):
        await directory.bulk_upsert(
            [Account(uid="c", mail="x@example.org"), Account(uid="c")], replace=False
        )
    assert await directory.get("c") is None


async def test_bulk_upsert_replaces_a_large_batch_with_its_addresses_in_place(
    directory: Directory,
) -> None:
    # The directory is searched for what the batch touches (LDAP: a few searches of
    # hundreds of terms each), never read whole, and a rerun changes nothing.
    accounts = [
        Account(uid=f"u{i:04d}", mail=f"u{i}@example.org", alternate_addresses=(f"a{i}@x.org",))
        for i in range(1200)
    ]
    assert await directory.bulk_upsert(accounts, replace=True) == BulkReport(created=1200)
    assert await directory.bulk_upsert(accounts, replace=True) == BulkReport(replaced=1200)
    assert await directory.count() == 1200
    assert await directory.get_many(["u0007", "u1199"]) == [accounts[7], accounts[1199]]
    clash = Account(uid="new", mail="a5@x.org")
    report = await directory.bulk_upsert([clash], replace=True, skip_refused=True)
    assert [r.uid for r in report.refused] == ["new"]


async def test_bulk_upsert_of_nothing_reports_nothing(directory: Directory) -> None:
    assert await directory.bulk_upsert([], replace=True) == BulkReport()


# --------------------------------------------------------------------------- lifecycle


async def test_ping_succeeds_on_an_open_directory(directory: Directory) -> None:
    await directory.ping()


CALLS: dict[str, Callable[[Directory], Awaitable[object]]] = {
    "find": lambda d: d.find("alice"),
    "get": lambda d: d.get("alice"),
    "get_many": lambda d: d.get_many(["alice"]),
    "search": lambda d: d.search("*"),
    "create": lambda d: d.create(Account(uid="bob")),
    "replace": lambda d: d.replace(Account(uid="alice")),
    "update": lambda d: d.update("alice", {"password": "x"}),
    "set_password": lambda d: d.set_password("alice", "x"),
    "delete": lambda d: d.delete("alice"),
    "bulk_upsert": lambda d: d.bulk_upsert([Account(uid="bob")], replace=True),
    "count": lambda d: d.count(),
    "ping": lambda d: d.ping(),
}


async def _first_uid(directory: Directory) -> object:
    async for uid in directory.iterate():
        return uid
    return None


@pytest.mark.parametrize("call", [*CALLS, "iterate"])
async def test_every_call_after_close_raises_directory_unavailable(
    directory: Directory, call: str
) -> None:
    await directory.create(Account(uid="alice"))
    await directory.close()
    with pytest.raises(DirectoryUnavailable):
        if call == "iterate":
            await _first_uid(directory)
        else:
            await CALLS[call](directory)


async def test_close_twice_is_harmless(directory: Directory) -> None:
    await directory.close()
    await directory.close()
    with pytest.raises(DirectoryUnavailable):
        await directory.ping()


# --------------------------------------------------------------------------- memory only


@pytest.mark.parametrize("call", CALLS)
async def test_a_memory_directory_made_unavailable_fails_every_call_until_restored(
    call: str,
) -> None:
    directory = MemoryDirectory([Account(uid="alice")])
    directory.set_unavailable("LDAP server down")
    with pytest.raises(DirectoryUnavailable, match="LDAP server down"):
        await CALLS[call](directory)
    directory.set_unavailable(None)
    await CALLS[call](directory)


def test_a_memory_directory_refuses_clashing_initial_accounts() -> None:
    with pytest.raises(AccountExists):
        MemoryDirectory([Account(uid="a", mail="x@y"), Account(uid="b", mail="x@y")])


# --------------------------------------------------------------------------- app passwords


async def test_app_passwords_are_read_back_with_the_account_in_creation_order(
    directory: Directory,
) -> None:
    account = full_account()
    later = app_password("a0", "tablet", created=1_800_000_000)
    await directory.create(
        dataclasses.replace(account, app_passwords=(later, *account.app_passwords))
    )
    found = await directory.find("alice@example.net")
    assert found is not None
    assert found.app_passwords == (*account.app_passwords, later)
    assert found.app_passwords_only


async def test_a_recorded_use_changes_that_app_password_alone(directory: Directory) -> None:
    account = full_account()
    await directory.create(account)
    use = LastUse(at=1_800_000_000, service="smtp", remote_ip="192.0.2.7")
    await directory.record_app_password_uses(
        [
            AppPasswordUsed(uid="ALICE", app_password="p1", use=use),
            AppPasswordUsed(uid="alice", app_password="gone", use=use),
            AppPasswordUsed(uid="nobody", app_password="p1", use=use),
        ]
    )
    found = await directory.get("alice")
    phone, laptop = account.app_passwords
    assert found == dataclasses.replace(
        account, app_passwords=(dataclasses.replace(phone, last_used=use), laptop)
    )


async def test_revoking_an_app_password_is_an_ordinary_edit(directory: Directory) -> None:
    account = full_account()
    await directory.create(account)
    done = await directory.modify(
        "alice", lambda a: dataclasses.replace(a, app_passwords=a.app_passwords[1:])
    )
    assert done.after.app_passwords == account.app_passwords[1:]
    assert await directory.get("alice") == done.after
