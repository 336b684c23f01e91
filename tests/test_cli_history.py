"""``mailwarden user history UID``: logins decided by one-shot commands are in the
SQLite state file, and the command prints them as the other listings do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import run


@pytest.fixture
def kept(tmp_path: Path) -> Path:
    """A site with ``[history] enabled = true``, an account and three logins."""
    path = tmp_path / "mw.toml"
    path.write_text(
        '[directory]\npath = "data/mw.db"\n[passwords]\nscheme = "SHA512-CRYPT"\n'
        '[dovecot]\nclient_socket = "run/auth-client"\nmaster_socket = "run/auth-master"\n'
        'userdb_socket = "run/auth-userdb"\n'
        '[server]\npid_file = "data/mw.pid"\ncontrol_socket = "run/control"\n'
        "[history]\nenabled = true\n"
    )
    assert run(path, "init").exit_code == 0
    made = run(path, "user", "add", "alice@example.com", "--password-stdin", stdin="secret\n")
    assert made.exit_code == 0, made.output
    assert (
        run(path, "auth", "test", "alice@example.com", "secret", "--rip", "192.0.2.7").exit_code
        == 0
    )
    assert run(path, "auth", "test", "alice@example.com", "wrong", "-s", "pop3").exit_code == 77
    assert run(path, "auth", "test", "nobody@example.com", "secret").exit_code == 77
    return path


def test_user_history_lists_the_accounts_logins_newest_first(kept: Path) -> None:
    r = run(kept, "user", "history", "alice@example.com", "--format", "tsv")
    assert r.exit_code == 0, r.output
    fields = [row.split("\t") for row in r.output.splitlines()]  # no header in TSV
    assert [(f[1], f[2], f[3], f[4], f[5]) for f in fields] == [
        ("cli", "pop3", "", "wrong-password", "password"),
        ("cli", "imap", "192.0.2.7", "accepted", "password"),
    ]


def test_user_history_json_has_every_field(kept: Path) -> None:
    r = run(kept, "user", "history", "alice@example.com", "--json", "--limit", "1")
    assert r.exit_code == 0, r.output
    (entry,) = json.loads(r.output)
    assert entry["uid"] == "alice@example.com" and entry["result"] == "wrong-password"
    assert entry["service"] == "pop3" and entry["credential"] == "password"
    assert entry["time"].endswith("Z") and isinstance(entry["at"], float)


def test_user_history_of_an_unknown_account_exits_67(kept: Path) -> None:
    r = run(kept, "user", "history", "nobody@example.com")
    assert r.exit_code == 67, r.output


def test_user_history_says_so_when_no_history_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "mw.toml"
    path.write_text('[directory]\npath = "data/mw.db"\n')
    assert run(path, "init").exit_code == 0
    assert run(path, "user", "add", "bob", "--no-password").exit_code == 0
    r = run(path, "user", "history", "bob")
    assert r.exit_code == 1 and "history.enabled" in r.output
