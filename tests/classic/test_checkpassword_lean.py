"""The lean start of ``mailwarden checkpassword``: the dispatcher and the config reader.

:mod:`mailwarden.checkpassword` reads its few config keys without
:mod:`mailwarden.config` (too slow to import once per login); these tests keep the
two in step: same defaults, same file precedence, same relative paths.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden import checkpassword, config
from mailwarden.app import resolve_path
from mailwarden.entry import checkpassword_args


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["checkpassword", "prog", "-c", "x"], (None, ["prog", "-c", "x"])),
        (["-c", "f.toml", "checkpassword", "prog"], ("f.toml", ["prog"])),
        (["--config", "f.toml", "checkpassword", "prog"], ("f.toml", ["prog"])),
        (["--config=f.toml", "checkpassword", "prog"], ("f.toml", ["prog"])),
        (["-cf.toml", "checkpassword", "prog"], ("f.toml", ["prog"])),
        (["checkpassword", "--", "prog"], (None, ["prog"])),
        (["checkpassword"], (None, [])),
        (["checkpassword", "--help"], None),
        (["-c", "f.toml", "checkpassword", "-h"], None),
        (["-c"], None),
        (["user", "list"], None),
        (["--version"], None),
        ([], None),
    ],
)
def test_only_checkpassword_calls_take_the_lean_path(
    argv: list[str], expected: tuple[str | None, list[str]] | None
) -> None:
    assert checkpassword_args(argv) == expected


def test_the_lean_defaults_are_the_config_modules() -> None:
    defaults = checkpassword.Settings()
    full = config.Config()
    lean = checkpassword._DEFAULTS
    assert lean["dovecot"] == {
        "enabled": full.dovecot.enabled,
        "client_socket": full.dovecot.client_socket,
        "userdb_socket": full.dovecot.userdb_socket,
        "master_socket": full.dovecot.master_socket,
    }
    assert lean["checkpassword"] == {
        "via": full.checkpassword.via,
        "timeout": full.checkpassword.timeout,
        "first_valid_uid": full.checkpassword.first_valid_uid,
        "first_valid_gid": full.checkpassword.first_valid_gid,
    }
    assert (defaults.first_valid_uid, defaults.first_valid_gid) == (
        full.checkpassword.first_valid_uid,
        full.checkpassword.first_valid_gid,
    )
    assert (defaults.via, defaults.timeout) == (full.checkpassword.via, full.checkpassword.timeout)
    assert str(config.SYSTEM_CONFIG) == checkpassword._DEFAULT_SYSTEM_CONFIG
    assert str(config.LOCAL_CONFIG) == checkpassword._DEFAULT_LOCAL_CONFIG


def test_the_config_file_is_found_as_the_config_module_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILWARDEN_CONFIG", str(tmp_path / "env.toml"))
    assert checkpassword.config_path(None) == str(config.find_config_path(None))
    assert checkpassword.config_path("x.toml") == str(config.find_config_path("x.toml"))


def test_the_settings_match_the_full_config(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "mw.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        '[dovecot]\nclient_socket = "../run/c"\nuserdb_socket = ""\n'
        'master_socket = "/abs/m"\n[checkpassword]\nvia = "daemon"\ntimeout = 3\n'
    )
    full = config.load(cfg)
    lean = checkpassword.read_settings(str(cfg))
    assert lean.client_socket == str(resolve_path(full, full.dovecot.client_socket))
    # userdb_socket off: the USER lookup goes to the master socket.
    assert lean.userdb_socket == "/abs/m"
    assert (lean.via, lean.timeout) == (full.checkpassword.via, full.checkpassword.timeout)
    assert lean.dovecot_enabled is full.dovecot.enabled


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[dovecot\n", "not valid TOML"),
        ("dovecot = 1\n", "dovecot: expected a table"),
        ("[dovecot]\nenabled = 1\n", "dovecot.enabled"),
        ("[checkpassword]\nvia = 1\n", "checkpassword.via"),
        ("[checkpassword]\ntimeout = true\n", "checkpassword.timeout"),
        ("[checkpassword]\nfirst_valid_uid = 0\n", "checkpassword.first_valid_uid"),
        ("[checkpassword]\nfirst_valid_gid = '1'\n", "checkpassword.first_valid_gid"),
        ("[checkpassword]\nsocket = 'x'\n", "checkpassword.socket"),
    ],
)
def test_a_wrong_key_the_command_reads_is_a_settings_error(
    tmp_path: Path, text: str, key: str
) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text(text)
    with pytest.raises(checkpassword.SettingsError, match=key):
        checkpassword.read_settings(str(cfg))
