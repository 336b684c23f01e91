"""Helpers shared by the test modules (import them from here, not from conftest)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mailwarden import schemes
from mailwarden.config import Config
from mailwarden.model import AuthAttempt, Password


def make_config(**sections: dict[str, Any]) -> Config:
    """A Config with some keys of some sections overridden, e.g. auth={"default_realm": "x"}."""
    config = Config()
    for name, overrides in sections.items():
        current = getattr(config, name)
        config = dataclasses.replace(config, **{name: dataclasses.replace(current, **overrides)})
    return config


# Tests hash with a cheap policy: SHA512-CRYPT costs ~1 ms, argon2's default ~60 ms.
FAST = make_config(passwords={"scheme": "SHA512-CRYPT"})


def hashed(password: str, scheme: str = "SHA512-CRYPT", user: str = "") -> str:
    return schemes.generate(password.encode(), scheme, user=user)


def attempt(username: str, password: str | None = "secret", **kw: Any) -> AuthAttempt:
    kw.setdefault("service", "imap")
    return AuthAttempt(
        username=username,
        credentials=Password(password.encode()) if password is not None else None,
        **kw,
    )
