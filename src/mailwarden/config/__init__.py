"""The one TOML configuration file, parsed into frozen typed objects.

Every section is a frozen dataclass; every key has a default (documented in
docs/configuration.md, which a test keeps in step with this package). Loading is
strict: an unknown key, a wrong type or an out-of-range value raises
:class:`~mailwarden.errors.ConfigError` naming the file, the key path and what
was expected, so a typo never silently becomes a default. Values that name an
entry of a registry (a password scheme, a SASL mechanism, an HTTP attribute
source) are checked by the registry's owner: :mod:`mailwarden.confignames`.

Where the file is found: ``--config PATH``, else ``$MAILWARDEN_CONFIG``, else
``/etc/mailwarden/mailwarden.toml``, else ``./mailwarden.toml`` (development);
with none of them, the built-in defaults apply.

The package: :mod:`.build` (TOML table -> section, the checks every key gets),
:mod:`.core`, :mod:`.classic`, :mod:`.guard`, :mod:`.oauth2`, :mod:`.sql` and :mod:`.web`
(the sections), :mod:`.whole` (:class:`Config` and the defaults table). It imports only
:mod:`mailwarden.errors` (the bottom floor; ``tests/test_layers.py``). Importing
it is cheap: the section modules load on first use of one of their names, so
``load(path, sections=(DovecotConfig, CheckpasswordConfig))`` (``mailwarden
checkpassword``, once per POP3 login) builds only those two sections' classes.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from mailwarden.errors import ConfigError, InvalidValue

if TYPE_CHECKING:
    from pathlib import Path

    from mailwarden.config.authpolicy import AuthPolicyConfig
    from mailwarden.config.build import RETIRED_KEYS, Section
    from mailwarden.config.classic import CheckpasswordConfig, DovecotConfig
    from mailwarden.config.core import (
        AuthConfig,
        ClusterConfig,
        DirectoryConfig,
        HashingConfig,
        LdapConfig,
        LogConfig,
        LoginAttr,
        PasswordsConfig,
        SaslauthdConfig,
        UsernameFormat,
    )
    from mailwarden.config.guard import (
        DEFAULT_GUARD_RULES,
        CacheConfig,
        GuardConfig,
        GuardRule,
        RedisConfig,
    )
    from mailwarden.config.oauth2 import OAuth2Config
    from mailwarden.config.server import HistoryConfig, ServerConfig, StateConfig
    from mailwarden.config.sql import SqlConfig
    from mailwarden.config.web import MAILGATE_FIELDS, HttpConfig, MailgateConfig
    from mailwarden.config.whole import Config, defaults_table

    SYSTEM_CONFIG: Path
    LOCAL_CONFIG: Path

_PATHS = {
    "SYSTEM_CONFIG": "/etc/mailwarden/mailwarden.toml",
    "LOCAL_CONFIG": "mailwarden.toml",
}

#: Where each public name lives (loaded on first use: see the module docstring).
_LAZY = {
    "RETIRED_KEYS": "build",
    "Section": "build",
    "AuthPolicyConfig": "authpolicy",
    "CheckpasswordConfig": "classic",
    "ClusterConfig": "core",
    "DovecotConfig": "classic",
    "SaslauthdConfig": "core",
    "AuthConfig": "core",
    "DirectoryConfig": "core",
    "HashingConfig": "core",
    "LdapConfig": "core",
    "LoginAttr": "core",
    "LogConfig": "core",
    "PasswordsConfig": "core",
    "OAuth2Config": "oauth2",
    "ServerConfig": "server",
    "StateConfig": "server",
    "HistoryConfig": "server",
    "UsernameFormat": "core",
    "DEFAULT_GUARD_RULES": "guard",
    "CacheConfig": "guard",
    "GuardConfig": "guard",
    "GuardRule": "guard",
    "RedisConfig": "guard",
    "SqlConfig": "sql",
    "MAILGATE_FIELDS": "web",
    "HttpConfig": "web",
    "MailgateConfig": "web",
    "Config": "whole",
    "defaults_table": "whole",
}

__all__ = [
    "DEFAULT_GUARD_RULES",
    "LOCAL_CONFIG",
    "MAILGATE_FIELDS",
    "RETIRED_KEYS",
    "SYSTEM_CONFIG",
    "AuthConfig",
    "AuthPolicyConfig",
    "CacheConfig",
    "CheckpasswordConfig",
    "ClusterConfig",
    "Config",
    "DirectoryConfig",
    "DovecotConfig",
    "GuardConfig",
    "GuardRule",
    "HashingConfig",
    "HistoryConfig",
    "HttpConfig",
    "LdapConfig",
    "LogConfig",
    "LoginAttr",
    "MailgateConfig",
    "OAuth2Config",
    "PasswordsConfig",
    "RedisConfig",
    "SaslauthdConfig",
    "Section",
    "Sections",
    "ServerConfig",
    "SqlConfig",
    "StateConfig",
    "UsernameFormat",
    "config_relative",
    "defaults_table",
    "find_config_path",
    "load",
    "loads",
    "located",
    "table_of",
]


def __getattr__(name: str) -> Any:
    if name in _PATHS:
        from pathlib import Path  # noqa: PLC0415 - not on checkpassword's lean path

        return Path(_PATHS[name])
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


S = TypeVar("S")


class Sections:
    """What ``load(path, sections=...)`` read: the named sections only, each checked
    as in a whole load (the other tables of the file are not looked at)."""

    __slots__ = ("found", "source")

    def __init__(self, *, source: str, found: Mapping[type, object]) -> None:
        self.source = source
        self.found = found

    def __getitem__(self, cls: type[S]) -> S:
        value = self.found[cls]
        assert isinstance(value, cls)
        return value


def _find(explicit: str | os.PathLike[str] | None) -> str | None:
    if explicit is not None:
        return os.fspath(explicit)
    env = os.environ.get("MAILWARDEN_CONFIG")
    if env:
        return env
    for candidate in _PATHS.values():
        if os.path.isfile(candidate):
            return candidate
    return None


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The file to read, by the precedence in the module docstring; None: defaults."""
    from pathlib import Path  # noqa: PLC0415 - not on checkpassword's lean path

    found = _find(explicit)
    return None if found is None else Path(found)


def config_relative(source: str, path: str) -> str:
    """``path`` from a config file read from ``source``: a relative path is relative
    to the file's folder (symlinks of the file followed; ``..`` tidied without
    following any). Empty, absolute, and built-in-default (``<...>``) ones are kept."""
    if not path or os.path.isabs(path) or source.startswith("<"):
        return path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(source)), path))


@overload
def load(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config: ...
@overload
def load(
    path: str | os.PathLike[str] | None,
    *,
    sections: Iterable[type[Section]],
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Sections: ...
def load(
    path: str | os.PathLike[str] | None = None,
    *,
    sections: Iterable[type[Section]] | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config | Sections:
    """Find, read and validate the configuration. Raises ConfigError.

    ``sections``: build only these section classes (from the tables named as in
    :class:`Config`) and return them as :class:`Sections`. ``overrides``: ``-o
    key=value`` texts; ``environ`` (default: the process environment): where the
    ``MAILWARDEN_*`` overrides are read (:mod:`.overrides`)."""
    found = _find(path)
    text = _read(found) if found is not None else ""
    source = found if found is not None else "<defaults>"
    env = os.environ if environ is None else environ
    if sections is None:
        return loads(text, source=source, overrides=overrides, environ=env)
    return loads(text, source=source, sections=sections, overrides=overrides, environ=env)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc


@overload
def loads(
    text: str,
    *,
    source: str = "<string>",
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config: ...
@overload
def loads(
    text: str,
    *,
    source: str = "<string>",
    sections: Iterable[type[Section]],
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Sections: ...
def loads(
    text: str,
    *,
    source: str = "<string>",
    sections: Iterable[type[Section]] | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config | Sections:
    """Parse TOML text into a Config (or the named :class:`Sections`). Raises ConfigError.

    ``overrides`` and ``environ`` as for :func:`load`, but ``environ`` defaults to
    none here: text given directly is read as it is."""
    from mailwarden.config.build import build  # noqa: PLC0415 - see __getattr__

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=source) from exc
    options = tuple(overrides)
    laid = _overrides(environ or {}, options)
    if laid:
        from mailwarden.config.overrides import apply  # noqa: PLC0415
        from mailwarden.config.whole import Config  # noqa: PLC0415

        data = apply(data, laid, Config)
    try:
        if sections is None:
            from mailwarden.config.whole import Config  # noqa: PLC0415

            return build(Config, {**data, "source": source, "overrides": list(options)}, "")
        found: dict[type, object] = {}
        for cls in sections:
            table = table_of(cls)
            found[cls] = build(cls, data.get(table, {}), f"{table}.")
        return Sections(source=source, found=found)
    except InvalidValue as exc:
        where = _where(text, source, exc.key or "", laid)
        raise ConfigError(f"expected {exc.expected}", path=where, key=exc.key) from None


def _overrides(environ: Mapping[str, str], options: tuple[str, ...]) -> list[Any]:
    """The overrides (config/overrides.py), without importing it when there are none
    (``mailwarden checkpassword`` loads two sections once per login)."""
    if not options and not any(name.startswith("MAILWARDEN_") and "__" in name for name in environ):
        return []
    from mailwarden.config.overrides import collect  # noqa: PLC0415

    return collect(environ, options)


def _where(text: str, source: str, key: str, laid: Iterable[Any]) -> str:
    """What an error about ``key`` names: the override that set it, else ``FILE:LINE``
    (config/locate.py), else the file."""
    for override in reversed(list(laid)):  # the last one that set the key won
        if override.covers(key):
            return str(override.origin)
    if source.startswith("<") or not key:
        return source
    from mailwarden.config.locate import line_of  # noqa: PLC0415 - error path only

    line = line_of(text, key)
    return source if line is None else f"{source}:{line}"


def located(config: Config, key: str, *, environ: Mapping[str, str] | None = None) -> str:
    """Where ``key`` of a loaded ``config`` was set, for an error found after loading
    (a check by a registry's owner, :mod:`mailwarden.confignames`): as :func:`loads`
    names it. ``environ``: as for :func:`load`."""
    text = ""
    if not config.source.startswith("<"):
        try:
            text = _read(config.source)
        except ConfigError:
            text = ""
    env = os.environ if environ is None else environ
    return _where(text, config.source, key, _overrides(env, config.overrides))


def table_of(cls: type[Section]) -> str:
    """The table a section class is read from: ``DovecotConfig`` -> ``dovecot`` (the
    name of its field in :class:`Config`; a test keeps the two in step)."""
    return cls.__name__.removesuffix("Config").lower()
