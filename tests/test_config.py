"""Configuration: defaults, strict validation with useful messages, docs kept in step."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from mailwarden import config, confignames
from mailwarden.errors import ConfigError
from mailwarden.model import HashPolicy

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_an_empty_file_gives_every_default() -> None:
    assert config.loads("", source="x.toml") == config.Config()


def test_values_are_parsed_into_typed_frozen_objects() -> None:
    cfg = config.loads(
        """
        [directory]
        path = "/srv/mw.db"
        login_attributes = ["uid"]
        timeout = 2
        [auth]
        master_user_separator = "*"
        [passwords]
        scheme = "sha512-crypt"
        """
    )
    assert cfg.directory.path == "/srv/mw.db"
    assert cfg.directory.login_attributes == ("uid",)
    assert cfg.directory.timeout == 2.0 and isinstance(cfg.directory.timeout, float)
    assert cfg.auth.master_user_separator == "*"
    with pytest.raises(AttributeError):
        cfg.auth.master_user_separator = "+"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[directory]\nreaders = 'four'", "directory.readers", "an integer"),
        ("[directory]\nreaders = 0", "directory.readers", ">= 1"),
        ("[directory]\nbackend = 'oracle'", "directory.backend", "'sqlite'"),
        (
            "[directory]\nlogin_attributes = ['uid', 'nick']",
            "directory.login_attributes[1]",
            "one of",
        ),
        ("[directory]\npaht = 'x'", "directory.paht", "unknown key"),
        ("[nosuchsection]\nx = 1", "nosuchsection", "unknown key"),
        ("[passwords]\nscheme = 'ROT13'", "passwords.scheme", "known password scheme"),
        ("[dovecot]\nmechanisms = ['PLAIN', 'ROT13']", "dovecot.mechanisms[1]", "SASL mechanism"),
        ("[http.attributes]\nquota = 'shoe_size'", "http.attributes.quota", "an account field"),
        (
            "[guard]\nallow_networks = ['10.0.0.0/8', 'lan']",
            "guard.allow_networks[1]",
            "10.0.0.0/8",
        ),
        ("[http]\ntrusted_proxies = ['proxy']", "http.trusted_proxies[0]", "127.0.0.1/32"),
        ("[passwords]\nbcrypt_cost = 40", "passwords.bcrypt_cost", "from 4 to 31"),
        ("[auth]\nmaster_user_separator = '**'", "auth.master_user_separator", "one character"),
        ("[log]\nlevel = true", "log.level", "one of"),
        ("directory = 3", "directory", "a table"),
    ],
)
def test_a_bad_value_names_the_file_the_key_and_what_was_expected(
    text: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        # config.loads checks types and ranges; confignames the registry names.
        confignames.check(config.loads(text, source="/etc/mailwarden/mailwarden.toml"))
    message = str(info.value)
    # The line where the file is on disk (test_config_overrides.py); this text is not.
    assert re.match(rf"/etc/mailwarden/mailwarden.toml(:\d+)?: {re.escape(key)}: expected", message)
    assert expected in message


def test_invalid_toml_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^broken.toml: not valid TOML"):
        config.loads("[directory\n", source="broken.toml")


def test_file_precedence_is_argument_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('[log]\nlevel = "debug"\n')
    b.write_text('[log]\nlevel = "error"\n')
    monkeypatch.setenv("MAILWARDEN_CONFIG", str(b))
    assert config.load(a).log.level == "debug"
    assert config.load().log.level == "error"
    assert config.load().source == str(b)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")


def test_docs_list_every_key_with_its_default() -> None:
    text = DOCS.read_text()
    rows = dict(re.findall(r"^\| `([a-z0-9_.]+)` \| `([^`]*)` \|", text, re.MULTILINE))
    for key, default, _type in config.defaults_table():
        assert key in rows, f"{key} is not documented in docs/configuration.md"
        assert rows[key] == default, f"{key}: docs say {rows[key]}, code says {default}"
    documented = set(rows)
    actual = {key for key, _, _ in config.defaults_table()}
    assert documented == actual, f"documented but not in the code: {documented - actual}"


def test_every_section_class_is_read_from_its_field_in_config() -> None:
    """load(sections=...) finds a section's table by its class name: the same table as
    the whole load's field of that type."""
    hints = typing.get_type_hints(config.Config)
    for f in dataclasses.fields(config.Config):
        if f.name not in ("source", "overrides"):
            assert config.table_of(hints[f.name]) == f.name


def test_a_partial_load_builds_the_same_sections_as_a_whole_load(tmp_path: Path) -> None:
    path = tmp_path / "mw.toml"
    path.write_text(
        '[dovecot]\nclient_socket = "run/c"\n[checkpassword]\nvia = "daemon"\n'
        '[directory]\nbackend = "oracle"\n'  # another table: not looked at
    )
    found = config.load(path, sections=(config.DovecotConfig, config.CheckpasswordConfig))
    assert found.source == str(path)
    assert found[config.DovecotConfig] == config.DovecotConfig(client_socket="run/c")
    assert found[config.CheckpasswordConfig] == config.CheckpasswordConfig(via="daemon")
    defaults = config.loads("", sections=(config.DovecotConfig,))
    assert defaults[config.DovecotConfig] == config.Config().dovecot


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[dovecot]\nclient_sockett = 'x'", "dovecot.client_sockett"),
        ("[dovecot]\nfailure_delay = 9", "dovecot.failure_delay"),
        ("[dovecot]\nsocket_mode = 0o600", "dovecot.socket_mode"),
        ("dovecot = 'x'", "dovecot"),
    ],
)
def test_a_partial_load_checks_its_sections_as_a_whole_load_does(
    tmp_path: Path, text: str, key: str
) -> None:
    path = tmp_path / "mw.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as whole:
        config.load(path)
    with pytest.raises(ConfigError) as partial:
        config.load(path, sections=(config.DovecotConfig,))
    assert str(partial.value) == str(whole.value)
    assert whole.value.key == key


@pytest.mark.parametrize("name", config.__all__)
def test_every_public_name_of_the_package_resolves(name: str) -> None:
    assert getattr(config, name) is not None


def test_relative_paths_are_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "real.toml").write_text("")
    link = tmp_path / "etc" / "mw.toml"
    link.symlink_to(tmp_path / "real.toml")
    assert config.config_relative(str(link), "run/../sock") == str(tmp_path / "sock")
    assert config.config_relative(str(link), "/abs/sock") == "/abs/sock"
    assert config.config_relative(str(link), "") == ""
    assert config.config_relative("<defaults>", "run/sock") == "run/sock"


def test_the_passwords_section_gives_the_hash_policy_it_extends() -> None:
    """One set of hash-policy fields and defaults: [passwords] is a HashPolicy plus
    default_scheme and rehash."""
    assert config.Config().passwords.hash_policy() == HashPolicy()
    cfg = config.loads("[passwords]\nscheme = 'sha512-crypt'\nbcrypt_cost = 7\nrehash = 'never'")
    assert cfg.passwords.hash_policy() == HashPolicy(scheme="SHA512-CRYPT", bcrypt_cost=7)


SENTINELS = "[guard.redis]\nsentinel_master = 'mw'\nsentinels = "


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (SENTINELS + "['10.0.0.11']", "guard.redis.sentinels[0]", "HOST:PORT such as"),
        (SENTINELS + "['10.0.0.11:']", "guard.redis.sentinels[0]", "HOST:PORT"),
        (SENTINELS + "[':26379']", "guard.redis.sentinels[0]", "HOST:PORT"),
        (SENTINELS + "['a:1', 'b:0']", "guard.redis.sentinels[1]", "port 1-65535"),
        (SENTINELS + "['a:65536']", "guard.redis.sentinels[0]", "port 1-65535"),
        (SENTINELS + "['a:+1']", "guard.redis.sentinels[0]", "HOST:PORT"),
        (SENTINELS + "['a:٣']", "guard.redis.sentinels[0]", "HOST:PORT"),  # a non-ASCII digit
        (SENTINELS + "['fd00::11:26379']", "guard.redis.sentinels[0]", "[fd00::11]:26379"),
        (SENTINELS + "['[10.0.0.1]:26379']", "guard.redis.sentinels[0]", "HOST:PORT"),
        (SENTINELS + "['redis://a:26379']", "guard.redis.sentinels[0]", "HOST:PORT"),
        (SENTINELS + "['a b:26379']", "guard.redis.sentinels[0]", "HOST:PORT"),
        (SENTINELS + "['a:1', 'b:1', 'A:1']", "guard.redis.sentinels[2]", "no Sentinel twice"),
        (SENTINELS + "'a:1'", "guard.redis.sentinels", "an array of a string"),
        ("[guard.redis]\nsentinels = ['a:1']", "guard.redis.sentinel_master", "together"),
        ("[guard.redis]\nsentinel_master = 'mw'", "guard.redis.sentinel_master", "together"),
        (
            "[guard.redis]\nsentinels = ['a:1']\nsentinel_master = 'my master'",
            "guard.redis.sentinel_master",
            "no spaces",
        ),
        (
            SENTINELS + "['a:1']\nurl = 'unix:///run/redis.sock'",
            "guard.redis.url",
            "redis:// or rediss:// URL with sentinels",
        ),
        (
            "[guard.redis]\nsentinel_password_file = 's.pw'",
            "guard.redis.sentinel_password_file",
            "only together with sentinels",
        ),
    ],
)
def test_a_bad_sentinel_setting_is_a_config_error_naming_the_key(
    text: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config.loads(text, source="mw.toml")
    message = str(info.value)
    assert re.match(rf"mw.toml:\d+: {re.escape(key)}: expected", message), message
    assert expected in message


def test_sentinel_addresses_are_host_names_ipv4_or_bracketed_ipv6() -> None:
    text = SENTINELS + "['sentinel-1.example.org:26379', '10.0.0.12:26380', '[fd00::13]:1']"
    redis = config.loads(text).guard.redis
    assert [(a.host, a.port) for a in redis.sentinel_addresses()] == [
        ("sentinel-1.example.org", 26379),
        ("10.0.0.12", 26380),
        ("fd00::13", 1),
    ]
