"""``[oauth2]``: what loads, what is refused with a clear message, the secret file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.errors import ConfigError
from mailwarden.oauth2 import open_verifier
from mailwarden.oauth2.transport import client_secret

GOOD = """
[oauth2]
issuer = "https://sso.example.com/realms/mail"
audience = ["mail"]
scope = ["mail"]
username_claim = "preferred_username"
introspection_url = "https://sso.example.com/realms/mail/protocol/openid-connect/token/introspect"
client_id = "mailwarden"
client_secret_file = "oauth2.secret"
"""


def test_a_whole_section_loads() -> None:
    c = config.loads(GOOD).oauth2
    assert c.enabled
    assert c.audience == ("mail",)
    assert c.keys_url == "https://sso.example.com/realms/mail/.well-known/openid-configuration"
    assert c.algorithms == ("RS256", "PS256", "ES256", "EdDSA")


def test_without_the_section_tokens_are_passwords() -> None:
    c = config.loads("").oauth2
    assert not c.enabled
    assert open_verifier(c, Path) is None


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('issuer = "https://x.test"', "oauth2.audience", "at least one audience"),
        ('issuer = "x.test"\naudience = ["a"]', "oauth2.issuer", "URL"),
        ('jwks_uri = "https://x.test/jwks"', "oauth2.issuer", "issuer"),
        ('algorithms = ["none"]', "oauth2.algorithms[0]", "never none or HS*"),
        ('algorithms = ["HS256"]', "oauth2.algorithms[0]", "never none or HS*"),
        ("algorithms = []", "oauth2.algorithms", "at least one"),
        ('username_claim = "name"', "oauth2.username_claim", "'email'"),
        ('introspection_url = "https://x.test/i"', "oauth2.client_id", "client id"),
        ('client_secret = "a"\nclient_secret_file = "b"', "oauth2.client_secret_file", "one or"),
        ("leeway = -1", "oauth2.leeway", "0 to 600"),
        ("timeout = 0", "oauth2.timeout", "> 0"),
        ('scope = ["a b"]', "oauth2.scope[0]", "without spaces"),
        ("introspection_cache_size = -1", "oauth2.introspection_cache_size", ">= 0"),
        ("unknown = 1", "oauth2.unknown", "unknown key"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_key(text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: expected .*{re.escape(expected)}"):
        config.loads(f"[oauth2]\n{text}\n")


def test_the_secret_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "mailwarden.toml").write_text(GOOD)
    (tmp_path / "oauth2.secret").write_text("s3cret\n")
    c = config.load(tmp_path / "mailwarden.toml").oauth2
    assert client_secret(c, lambda p: tmp_path / p) == "s3cret"
    (tmp_path / "oauth2.secret").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        client_secret(c, lambda p: tmp_path / p)
    (tmp_path / "oauth2.secret").unlink()
    with pytest.raises(ConfigError, match=r"oauth2\.client_secret_file: cannot read"):
        client_secret(c, lambda p: tmp_path / p)


def test_the_engine_imports_neither_httpx_nor_joserfc() -> None:
    """One-shot commands (checkpassword, once per POP3 login) build the engine: the
    HTTP client and the JOSE library load only when [oauth2] is configured."""
    code = (
        "import sys, mailwarden.app, mailwarden.auth.engine\n"
        "print(sorted(m for m in ('httpx', 'joserfc') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
