"""The lean start of ``mailwarden checkpassword``: the dispatcher and the config reader.

:mod:`mailwarden.checkpassword` loads only the two sections it reads
(``config.load(path, sections=...)``): the same classes, defaults and checks as a
whole load, and the same relative paths as the daemon's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden import checkpassword, config
from mailwarden.app import resolve_path
from mailwarden.entry import checkpassword_args
from mailwarden.errors import ConfigError


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


def test_the_settings_match_the_full_config(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "mw.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        '[server]\ncontrol_socket = "../run/c"\n[checkpassword]\nvia = "daemon"\ntimeout = 3\n'
    )
    full = config.load(cfg)
    lean = checkpassword.read_settings(str(cfg))
    assert lean.control_socket == str(resolve_path(full, full.server.control_socket))
    assert lean.control_socket == str(tmp_path / "run" / "c")
    assert (lean.via, lean.timeout) == (full.checkpassword.via, full.checkpassword.timeout)
    assert (lean.first_valid_uid, lean.first_valid_gid) == (
        full.checkpassword.first_valid_uid,
        full.checkpassword.first_valid_gid,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server\n", "not valid TOML"),
        ("server = 1\n", "server: expected a table"),
        ("[server]\ncontrol_socket = 1\n", "server.control_socket"),
        ("[checkpassword]\nfailure_delay = 15\n", "checkpassword.failure_delay"),
        ("[checkpassword]\nvia = 1\n", "checkpassword.via"),
        ("[checkpassword]\ntimeout = true\n", "checkpassword.timeout"),
        ("[checkpassword]\nfirst_valid_uid = 0\n", "checkpassword.first_valid_uid"),
        ("[checkpassword]\nfirst_valid_gid = '1'\n", "checkpassword.first_valid_gid"),
        ("[checkpassword]\nsocket = 'x'\n", "checkpassword.socket"),
    ],
)
def test_a_wrong_key_the_command_reads_is_a_config_error(
    tmp_path: Path, text: str, key: str
) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=key):
        checkpassword.read_settings(str(cfg))
