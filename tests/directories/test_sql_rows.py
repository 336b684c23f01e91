"""Result rows to accounts as Dovecot 2.3 reads them (directories/sql/dovecotrows.py)."""

from __future__ import annotations

import datetime
import decimal

import pytest

from mailwarden.directories.sql.dovecotrows import (
    Columns,
    RowError,
    as_text,
    columns,
    iterate_user,
    passdb_account,
    renamed,
    userdb_account,
    with_scheme,
)
from mailwarden.model import Account


def row(**values: object) -> Columns:
    return columns(tuple(values), tuple(values.values()))


def passdb(login: str = "a@b.c", **values: object) -> Account:
    return passdb_account(row(**values), login, default_scheme="md5-crypt")


def no_names(kind: str, name: str) -> int | None:
    return None


def test_a_value_without_scheme_prefix_gets_the_default_scheme() -> None:
    assert with_scheme("$1$x$y", "MD5-CRYPT") == "{MD5-CRYPT}$1$x$y"
    assert with_scheme("{SHA512-CRYPT}$6$x", "MD5") == "{SHA512-CRYPT}$6$x"
    assert with_scheme("{broken", "MD5") == "{MD5}{broken"
    assert with_scheme("{PLAIN}x", "MD5", noscheme=True) == "{MD5}{PLAIN}x"
    assert passdb(password="$1$x$y").password == "{MD5-CRYPT}$1$x$y"
    assert passdb(password_noscheme="{x}").password == "{MD5-CRYPT}{x}"


def test_values_are_text_as_dovecots_drivers_give_them() -> None:
    assert as_text(True) == "t"
    assert as_text(1024000) == "1024000"
    assert as_text(decimal.Decimal("1.50")) == "1.50"
    assert as_text(b"caf\xc3\xa9") == "café"
    assert as_text(datetime.date(2000, 1, 1)) == "2000-01-01"
    assert as_text(None) is None


def test_renames() -> None:
    assert renamed("a@b", "user", "x") == "x"
    assert renamed("a@b", "username", "x") == "x@b"
    assert renamed("a", "username", "x") == "x"
    assert renamed("a@b", "username", "x@y") == "x@y"
    assert renamed("a@b", "domain", "c") == "a@c"
    assert renamed("a", "domain", "c") == "a@c"


def test_nulls_set_nothing_and_protected_and_remove_work() -> None:
    account = passdb(
        password="{PLAIN}p", reason=None, nodelay="", **{"host:protected": "h", "x:remove": "1"}
    )
    assert dict(account.passdb_fields) == {"nodelay": "", "host": "h"}


def test_nopassword_counts_only_without_a_password() -> None:
    assert "nopassword" in passdb(password=None, nopassword="Y").passdb_fields
    assert "nopassword" not in passdb(password="{PLAIN}x", nopassword="Y").passdb_fields


def test_a_password_query_without_a_password_column_is_refused() -> None:
    with pytest.raises(RowError, match="password"):
        passdb(user="x")


def test_userdb_fields_from_the_user_query_and_system_names() -> None:
    base = passdb(password="{PLAIN}p", user="Alice@b.c")
    account = userdb_account(
        row(home="/h", uid="vmail", gid="5", quota_rule="*:storage=1G", mail=None, sieve="x"),
        "alice@b.c",
        base=base,
        resolve=lambda kind, name: 5000 if name == "vmail" else None,
    )
    assert (account.uid, account.password, account.home) == ("Alice@b.c", "{PLAIN}p", "/h")
    assert (account.uid_number, account.gid_number, account.quota_bytes) == (5000, 5, 1 << 30)
    assert dict(account.userdb_fields) == {"sieve": "x"}
    with pytest.raises(RowError, match="nobody-here"):
        userdb_account(row(uid="nobody-here"), "a", resolve=no_names)
    with pytest.raises(RowError, match="tempfail"):
        userdb_account(row(tempfail="1"), "a", resolve=no_names)


def test_the_iterate_user_rules() -> None:
    assert iterate_user(row(user="a@b", x=1)) == "a@b"
    assert iterate_user(row(username="a", domain="b")) == "a@b"
    assert iterate_user(row(username="a")) == "a"
    with pytest.raises(RowError, match="didn't return 'user'"):
        iterate_user(row(x=1, user="a"))
    with pytest.raises(RowError, match="NULL"):
        iterate_user(row(user=None))
