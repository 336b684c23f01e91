"""Values laid over the config file before it is checked: ``MAILWARDEN_*`` environment
variables and the command line's ``-o key=value`` (precedence: file < environment < -o).

* ``-o section.key=value`` (dotted path, as in the file: ``-o guard.redis.timeout=2``).
* ``MAILWARDEN_SECTION__KEY=value``: the path in upper case, its parts joined by a
  *double* underscore, so that names with underscores stay readable and unambiguous
  (``MAILWARDEN_GUARD__BAN_TIME``, ``MAILWARDEN_GUARD__REDIS__PASSWORD_FILE``). A
  variable without ``__`` (``MAILWARDEN_CONFIG``) is not an override.

A value is read as a TOML value when it is one (``60``, ``true``, ``["a", "b"]``,
``{name = "x"}``, ``"quoted"``) and as plain text otherwise, except that a key whose
type is a string always takes the text (a quoted TOML string is unquoted): a password
``123456`` in the environment stays the string it is. Every override keeps where it
came from (:attr:`Override.origin`), so that an error about its key names it.

Belongs here: reading overrides and laying them over the parsed TOML tables. Whether
a key exists and what it accepts stays :mod:`.build`'s, as for a key in the file.
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, get_args, get_origin

from mailwarden.errors import ConfigError

ENV_PREFIX = "MAILWARDEN_"
ENV_SEPARATOR = "__"


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    """One value for the key ``path`` (``("guard", "ban_time")``), with its origin
    (``-o guard.ban_time=60`` or ``$MAILWARDEN_GUARD__BAN_TIME``) and its text."""

    path: tuple[str, ...]
    text: str
    origin: str

    @property
    def key(self) -> str:
        return ".".join(self.path)

    def covers(self, key: str) -> bool:
        """Whether an error about ``key`` is about this override: its value (or a part
        of it), or a table it named (``gaurd`` for ``-o gaurd.ban_time=1``)."""
        mine = self.key
        return key == mine or key.startswith((mine + ".", mine + "[")) or mine.startswith(key + ".")


def parse_value(text: str) -> Any:
    """``text`` as one TOML value, or ``text`` itself when it is not exactly one."""
    if "\n" in text or "\r" in text:
        return text
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if list(parsed) == ["v"] else text


def from_option(option: str) -> Override:
    """``-o section.key=value``; ConfigError when it is not of that form."""
    key, sep, text = option.partition("=")
    path = tuple(part.strip() for part in key.strip().split("."))
    if not sep or not all(path):
        raise ConfigError(f"-o {option}: expected section.key=value")
    return Override(path=path, text=text, origin=f"-o {key.strip()}")


def from_environ(environ: Mapping[str, str]) -> list[Override]:
    """The overrides among ``environ`` (sorted by name, so the order is stable)."""
    found = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_SEPARATOR))
        if not all(path):
            raise ConfigError(f"${name}: expected MAILWARDEN_SECTION__KEY (parts joined by __)")
        found.append(Override(path=path, text=environ[name], origin=f"${name}"))
    return found


def collect(environ: Mapping[str, str], options: Iterable[str]) -> list[Override]:
    """Environment overrides first, then ``-o`` ones: a later one wins."""
    return [*from_environ(environ), *(from_option(o) for o in options)]


def apply(data: dict[str, Any], overrides: Iterable[Override], schema: type) -> dict[str, Any]:
    """``data`` (the file's top table) with each override laid over it, copied where
    changed. ``schema``: the :class:`~mailwarden.config.Config` class, for the type of
    each key (a string key takes the text as it is; see the module docstring)."""
    result = dict(data)
    for override in overrides:
        table = result
        for depth, part in enumerate(override.path[:-1]):
            inner = table.get(part, {})
            if not isinstance(inner, dict):
                where = ".".join(override.path[: depth + 1])
                raise ConfigError(f"{override.origin}: {where} is not a table in the file")
            table[part] = inner = dict(inner)
            table = inner
        table[override.path[-1]] = _value(override, schema)
    return result


def _value(override: Override, schema: type) -> Any:
    parsed = parse_value(override.text)
    if _is_text(key_type(schema, override.path)) and not isinstance(parsed, str):
        return override.text
    return parsed


def key_type(schema: type, path: tuple[str, ...]) -> Any:
    """The annotated type of the key at ``path`` under ``schema``, or None if unknown."""
    tp: Any = schema
    for part in path:
        if not (isinstance(tp, type) and is_dataclass(tp)):
            return None
        if part not in {f.name for f in fields(tp)}:
            return None
        tp = typing.get_type_hints(tp)[part]
    return tp


def _is_text(tp: Any) -> bool:
    """A plain string key (a union with str counts; a Literal of names does not: its
    choices are checked as typed)."""
    if tp is str:
        return True
    if get_origin(tp) in (types.UnionType, typing.Union):
        return str in get_args(tp)
    return False
