"""Admin validation at the model: field names and addresses (issue 15, item 21).

A passdb field name ending in a newline once passed (``re.match`` with ``$``
accepts a final newline) and then broke ``export passwd-file`` for the whole
directory; ``mail = "root,carl@example.com"`` passed, so a gateway reply would
have gone to local root as well. Both are refused by every editing path (FIELD=VALUE,
JSON, the directories' own check), and what is accepted always exports.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mailwarden.accounts import passwdfile
from mailwarden.accounts import rules as accounts
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.cli import main
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import InvalidAccount
from mailwarden.model import Account, Profile
from tests.conftest import EngineFactory

BAD_FIELD_NAMES = ["reason\n", "reason\r", "a=b", "a b", "a\tb", "nul\x00", "", "\x1b[31m"]
BAD_ADDRESSES = [
    "root,carl@example.com",
    "carl@example.com\n",
    "carl@example.com,root",
    "root;carl@example.com",
    "Carl <carl@example.com>",
    '"carl"@example.com',
    "carl@@example.com",
    "carl..x@example.com",
    "carl@example..com",
    "-carl@example.com",
    "carl@example.com (Carl)",
]
GOOD_ADDRESSES = ["carl@example.com", "c.a+rl@sub.example-1.org", "o'neil@example.org"]


@pytest.mark.parametrize("group", ["passdb_fields", "userdb_fields"])
@pytest.mark.parametrize("name", BAD_FIELD_NAMES)
def test_a_field_name_that_cannot_travel_as_name_value_is_refused(group: str, name: str) -> None:
    with pytest.raises(InvalidAccount):
        accounts.apply_json(Account(uid="carl"), {group: {name: "x"}})


@pytest.mark.parametrize("name", BAD_FIELD_NAMES)
async def test_every_directory_refuses_such_a_field_name(name: str) -> None:
    directory = MemoryDirectory()
    with pytest.raises(InvalidAccount):
        await directory.create(Account(uid="carl", passdb_fields={name: "x"}))


@pytest.mark.parametrize("address", BAD_ADDRESSES)
@pytest.mark.parametrize("field", ["mail", "profile.email_forward"])
def test_something_that_is_not_one_address_is_refused(address: str, field: str) -> None:
    named = re.escape(repr(address))
    with pytest.raises(InvalidAccount, match=named):
        accounts.apply_json(Account(uid="carl"), {field: address})
    with pytest.raises(InvalidAccount, match=named):
        accounts.validate(Account(uid="carl", alternate_addresses=(address,)))


@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_ordinary_addresses_are_accepted(address: str) -> None:
    account = accounts.apply_assignments(
        Account(uid="carl"), [f"mail={address}", f"alternate_addresses={address.upper()}"]
    )
    assert account.mail == address
    accounts.validate(account)


def test_a_comma_in_mail_is_refused_through_the_cli_syntax_too() -> None:
    with pytest.raises(InvalidAccount, match=re.escape("root,carl@example.com")):
        accounts.apply_assignments(Account(uid="carl"), ["mail=root,carl@example.com"])


async def test_what_the_admin_accepts_always_exports(make_engine: EngineFactory) -> None:
    """The reproduction: an edit through AccountAdmin, then export of every account."""
    directory = MemoryDirectory([Account(uid="alice", mail="alice@example.com")])
    engine = make_engine(d=directory)
    admin = AccountAdmin(
        directory=directory, hasher=engine.hasher, engine=engine, default_scheme="PLAIN"
    )
    changes: list[dict[str, Any]] = [
        {"passdb_fields": {"reason\n": "x"}},
        {"mail": "root,carl@example.com"},
        {"passdb_fields": {"nodelay": "", "reason": "Moved"}},
        {"profile": {"email_forward": "carl@elsewhere.example"}},
    ]
    for change in changes:
        try:
            await admin.patch("alice", change)
        except InvalidAccount:
            continue
    async for uid in directory.iterate():
        account = await directory.get(uid)
        assert account is not None
        passwdfile.format_account(account)
    stored = await directory.get("alice")
    assert stored is not None
    assert "reason\n" not in stored.passdb_fields
    assert stored.mail == "alice@example.com"
    assert stored.profile == Profile(email_forward="carl@elsewhere.example")


def test_an_account_a_passwd_file_cannot_carry_does_not_stop_the_export(tmp_path: Path) -> None:
    config = tmp_path / "mw.toml"
    config.write_text(
        '[directory]\npath = "mw.db"\n[passwords]\nscheme = "SHA512-CRYPT"\n'
        '[dovecot]\nclient_socket = "run/auth-client"\nmaster_socket = "run/auth-master"\n'
        'userdb_socket = "run/auth-userdb"\n[server]\ncontrol_socket = "run/control"\n'
    )

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args], input="pw\n")

    assert run("init").exit_code == 0
    # A space in a value is fine in SQLite and LDAP; passwd-file has no escape for it.
    added = run("user", "add", "aaron", "--password-stdin", "--set", "passdb.reason=Gone away")
    assert added.exit_code == 0, added.output
    assert run("user", "add", "zoe", "--password-stdin").exit_code == 0
    out = tmp_path / "out.passwd"
    r = run("export", "passwd-file", str(out))
    assert r.exit_code == 65
    assert "aaron" in r.output and "contains a space" in r.output
    assert [line.split(":")[0] for line in out.read_text().splitlines()] == ["zoe"]
