"""The whole file: :class:`Config` (one field per section) and the table of every
key's default that docs/configuration.md is checked against."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, get_args, get_origin

from mailwarden.config.authpolicy import AuthPolicyConfig
from mailwarden.config.build import META_FIELDS, Section, require
from mailwarden.config.classic import CheckpasswordConfig, DovecotConfig
from mailwarden.config.core import (
    AuthConfig,
    ClusterConfig,
    DirectoryConfig,
    HashingConfig,
    LdapConfig,
    LogConfig,
    PasswordsConfig,
    SaslauthdConfig,
)
from mailwarden.config.guard import CacheConfig, GuardConfig
from mailwarden.config.oauth2 import OAuth2Config
from mailwarden.config.server import HistoryConfig, ServerConfig, StateConfig
from mailwarden.config.sql import SqlConfig
from mailwarden.config.web import HttpConfig, MailgateConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class Config(Section):
    """The whole configuration file."""

    directory: DirectoryConfig = field(default_factory=DirectoryConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    passwords: PasswordsConfig = field(default_factory=PasswordsConfig)
    hashing: HashingConfig = field(default_factory=HashingConfig)
    dovecot: DovecotConfig = field(default_factory=DovecotConfig)
    log: LogConfig = field(default_factory=LogConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    ldap: LdapConfig = field(default_factory=LdapConfig)
    sql: SqlConfig = field(default_factory=SqlConfig)
    saslauthd: SaslauthdConfig = field(default_factory=SaslauthdConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    checkpassword: CheckpasswordConfig = field(default_factory=CheckpasswordConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    authpolicy: AuthPolicyConfig = field(default_factory=AuthPolicyConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    mailgate: MailgateConfig = field(default_factory=MailgateConfig)
    oauth2: OAuth2Config = field(default_factory=OAuth2Config)
    state: StateConfig = field(default_factory=StateConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    source: str = field(default="<defaults>", compare=False)
    #: The ``-o`` overrides laid over the file (config/overrides.py), kept so that a
    #: reload (SIGHUP) reads the file with them again.
    overrides: tuple[str, ...] = field(default=(), compare=False)

    def check(self, key: str) -> None:
        # Several workers must share the brute-force state (docs/architecture.md).
        require(
            self.server.workers == 1 or self.guard.store == "redis",
            "server.workers",
            '1 unless guard.store = "redis" (workers must share the brute-force state)',
        )
        # The policy server is a route of the HTTP listener (docs/architecture.md).
        require(
            not self.authpolicy.enabled or self.http.enabled,
            "authpolicy.enabled",
            "true only with http.enabled = true (the policy server is a route of [http])",
        )


def defaults_table() -> list[tuple[str, str, str]]:
    """``(key path, default as TOML, type)`` for every key: docs are checked against it."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(Config)
    for section in fields(Config):
        if section.name in META_FIELDS:
            continue
        rows.extend(_rows(hints[section.name], section.name))
    return rows


def _rows(cls: Any, prefix: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    sub_hints = typing.get_type_hints(cls)
    instance = cls()
    for f in fields(cls):
        value = getattr(instance, f.name)
        key = f"{prefix}.{f.name}"
        if is_dataclass(value):  # a sub-table such as [guard.redis]
            rows.extend(_rows(type(value), key))
        elif f.name.endswith("_mode"):  # file modes read best in octal, as TOML allows
            rows.append((key, oct(value), "integer"))
        else:
            rows.append((key, _toml_value(value), _type_name(sub_hints[f.name])))
    return rows


def _toml_value(value: Any) -> str:
    if is_dataclass(value) and not isinstance(value, type):
        items = [f"{f.name} = {_toml_value(getattr(value, f.name))}" for f in fields(value)]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " \\| ".join(repr(a).replace("'", '"') for a in get_args(tp))
    if origin is tuple:
        return f"array of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"table of {_type_name(get_args(tp)[1])}"
    if is_dataclass(tp):
        return "table"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, str(tp))
