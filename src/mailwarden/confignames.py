"""Config values that name an entry of a registry, checked by the registry's owner.

:mod:`mailwarden.config` is the bottom floor: it imports only ``errors`` (and may
import ``model``), so it cannot know which password schemes, SASL mechanisms or
HTTP attribute sources exist. Those three lists are registries of their own
packages (``schemes.SCHEMES``, ``sasl.MECHANISMS``, ``protocols.nauthilus``), and
the Dovecot-style SQL queries are parsed by their owner (``directories.sql.queries``);
this module holds the one check of each against the config, and :func:`load` is
``config.load`` plus these checks: what every command and the daemon read the file
with. A bad name is a :class:`~mailwarden.errors.ConfigError` naming the file, the
key and the known names, as every other bad value.

Belongs here: a check of a config value against a registry; nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from mailwarden import config as config_mod
from mailwarden import sasl, schemes
from mailwarden.config import Config, secrets
from mailwarden.errors import ConfigError, InvalidValue
from mailwarden.protocols import nauthilus


def load(path: str | os.PathLike[str] | None = None, *, overrides: Iterable[str] = ()) -> Config:
    """:func:`mailwarden.config.load` (``overrides``: ``-o key=value`` texts), then
    :func:`check`, then the secrets of ``*_file`` keys read in
    (:func:`mailwarden.config.secrets.resolve`). Raises ConfigError."""
    return secrets.resolve(check(config_mod.load(path, overrides=overrides)))


def check(config: Config) -> Config:
    """``config`` when every registry name in it is known, else ConfigError."""
    passwords = config.passwords
    for name, value in (("scheme", passwords.scheme), ("default_scheme", passwords.default_scheme)):
        _require(
            config,
            value.upper() in schemes.SCHEMES,
            f"passwords.{name}",
            f"a known password scheme (one of {', '.join(sorted(schemes.SCHEMES))})",
        )
    for i, mech in enumerate(config.dovecot.mechanisms):
        _require(
            config,
            mech.upper() in sasl.MECHANISMS,
            f"dovecot.mechanisms[{i}]",
            f"a SASL mechanism (one of {', '.join(sorted(sasl.MECHANISMS))})",
        )
    if config.directory.backend == "sql" and config.sql.mode == "dovecot":
        # Imported here: only a site with the SQL directory pays for it.
        from mailwarden.directories.sql.queries import parse_queries  # noqa: PLC0415

        try:
            parse_queries(config.sql)
        except InvalidValue as exc:
            where = config_mod.located(config, exc.key or "")
            raise ConfigError(f"expected {exc.expected}", path=where, key=exc.key) from None
    for name, source in config.http.attributes.items():
        _require(
            config,
            nauthilus.valid_source(source),
            f"http.attributes.{name}",
            "an account field (" + ", ".join(nauthilus.SOURCES) + "), userdb:X or passdb:X",
        )
    return config


def _require(config: Config, ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"expected {expected}", path=config_mod.located(config, key), key=key)
