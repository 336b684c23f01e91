"""Secret files: one reader (config/secrets.py) for every ``*_file`` key, the pair rule,
and the secrets read in when the config is loaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mailwarden import config, confignames
from mailwarden.config.build import pairs
from mailwarden.config.secrets import MAX_SECRET_BYTES, read_secret, read_secret_bytes
from mailwarden.errors import ConfigError


@pytest.mark.parametrize(
    ("content", "secret"),
    [
        (b"s3cret\n", "s3cret"),
        (b"s3cret", "s3cret"),
        (b"s3cret\r\n", "s3cret"),
        (b"  spaced out \n", "  spaced out "),
        (b"tab\t\n", "tab\t"),
        ("pässwörd\n".encode(), "pässwörd"),
    ],
)
def test_the_whole_file_is_the_secret_less_one_trailing_newline(
    tmp_path: Path, content: bytes, secret: str
) -> None:
    (tmp_path / "s").write_bytes(content)
    assert read_secret("s", key="sql.password_file", resolve=lambda p: tmp_path / p) == secret


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"one\ntwo\n", "more than one line"),
        (b"one\n\n", "more than one line"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b"x" * (MAX_SECRET_BYTES + 1), "longer than"),
    ],
)
def test_a_bad_secret_file_names_the_key_and_the_path(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "s").write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        read_secret("s", key="http.admin_token_file", resolve=lambda p: tmp_path / p)
    assert info.value.key == "http.admin_token_file"
    assert str(tmp_path / "s") in str(info.value)


def test_a_missing_file_names_the_key_and_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^ldap\.bind_password_file: cannot read .*/nope"):
        read_secret("nope", key="ldap.bind_password_file", resolve=lambda p: tmp_path / p)


def test_binary_secrets_are_read_as_bytes(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"\xff" * 20 + b"\n")
    got = read_secret_bytes("k", key="http.session_secret_file", resolve=lambda p: tmp_path / p)
    assert got == b"\xff" * 20


def test_credentials_directory_paths_need_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sql").write_text("from-systemd\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    name = "$CREDENTIALS_DIRECTORY/sql"
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        read_secret(name, key="sql.password_file", resolve=lambda p: tmp_path / p)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_secret(name, key="sql.password_file", resolve=lambda p: tmp_path / p) == (
        "from-systemd"
    )


def all_pairs() -> list[tuple[str, str, str]]:
    """(table, x, x_file) for every secret pair of every section and sub-table."""
    found = []

    def walk(section: object, table: str) -> None:
        for name, file_name in pairs(section):
            found.append((table, name, file_name))
        for f in dataclasses.fields(section):  # type: ignore[arg-type]
            value = getattr(section, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                walk(value, f"{table}.{f.name}" if table else f.name)

    walk(config.Config(), "")
    return found


def test_every_secret_has_a_file_companion() -> None:
    keys = {f"{t}.{x}" for t, x, _ in all_pairs()}
    assert keys >= {
        "sql.password",
        "ldap.bind_password",
        "http.auth_password",
        "http.admin_token",
        "http.metrics_token",
        "oauth2.client_secret",
    }


@pytest.mark.parametrize(("table", "name", "file_name"), all_pairs())
def test_setting_both_a_secret_and_its_file_is_an_error(
    table: str, name: str, file_name: str
) -> None:
    text = f'[{table}]\n{name} = "a"\n{file_name} = "b"\n'
    with pytest.raises(ConfigError) as info:
        config.loads(text, source="mw.toml")
    assert info.value.key == f"{table}.{file_name}", str(info.value)
    assert "one or the other" in str(info.value)


@pytest.mark.parametrize(("table", "name", "file_name"), all_pairs())
def test_every_secret_file_is_read_in_when_the_config_is_loaded(
    tmp_path: Path, table: str, name: str, file_name: str
) -> None:
    (tmp_path / "secret").write_text("t0ps3cret\n")
    path = tmp_path / "mw.toml"
    path.write_text(f'[{table}]\n{file_name} = "secret"\n')
    loaded = confignames.load(path)
    section: object = loaded
    for part in table.split("."):
        section = getattr(section, part)
    assert getattr(section, name) == "t0ps3cret"
    assert getattr(section, file_name) == ""


def test_an_unreadable_secret_stops_the_load_naming_the_line_or_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mw.toml"
    path.write_text('[log]\nlevel = "info"\n[http]\nadmin_token_file = "absent"\n')
    with pytest.raises(ConfigError) as info:
        confignames.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: http.admin_token_file: cannot read "), message
    assert str(tmp_path / "absent") in message
    path.write_text("")
    monkeypatch.setenv("MAILWARDEN_HTTP__METRICS_TOKEN_FILE", "/nonexistent/token")
    with pytest.raises(ConfigError, match=r"^\$MAILWARDEN_HTTP__METRICS_TOKEN_FILE: http"):
        confignames.load(path)
