"""Building a section from its TOML table: types converted and checked, unknown
and retired keys refused, then the section's own :meth:`Section.check`.

Every problem is an :class:`~mailwarden.errors.InvalidValue` (key, what was expected);
:func:`mailwarden.config.loads` raises it again as a ConfigError naming the file.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, get_args, get_origin

from mailwarden.errors import InvalidValue


class Section:
    """Base of every section (and sub-table) class: :meth:`check` runs after the
    keys are converted, with the section's key path (``"guard.redis"``)."""

    __slots__ = ()

    def check(self, key: str) -> None:
        """Raise :class:`InvalidValue` for a value its type cannot refuse (a range, a pair)."""


def require(ok: bool, key: str, expected: str) -> None:
    """InvalidValue(key, expected) unless ``ok``."""
    if not ok:
        raise InvalidValue(key, expected)


def require_networks(networks: tuple[str, ...], key: str, example: str) -> None:
    """InvalidValue for the first entry of ``networks`` that is not an IP network
    (``key[i]``: "a network such as ``example``")."""
    # Imported here: this module is on checkpassword's per-login path, which reads
    # no network list, and ipaddress costs about a millisecond to import.
    import ipaddress  # noqa: PLC0415

    for i, net in enumerate(networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise InvalidValue(f"{key}[{i}]", f"a network such as {example}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPort:
    """A TCP address from the config: ``host`` without IPv6 brackets, ``port`` 1-65535."""

    host: str
    port: int


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def host_port(text: str) -> HostPort | None:
    """``text`` as ``HOST:PORT``, or None when it is not one.

    HOST is a host name, an IPv4 address or an IPv6 address in brackets
    (``[fd00::11]:26379``): a bare IPv6 address is refused, since where its last
    group ends and the port begins would be a guess.
    """
    host, sep, port = text.rpartition(":")
    if not (sep and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return None
    if host.startswith("[") and host.endswith("]"):
        import ipaddress  # noqa: PLC0415 - see require_networks

        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    elif not _HOSTNAME.fullmatch(host):
        return None
    return HostPort(host=host, port=int(port))


S = TypeVar("S", bound=Section)

#: Keys that existed once, with what replaces them (a clearer error than "unknown key").
RETIRED_KEYS: dict[str, str] = {
    "dovecot.socket_mode": "client_socket_mode, login_socket_mode and userdb_socket_mode "
    "instead (socket_mode was removed: every socket has its own mode)",
    "dovecot.socket_user": "client_socket_user, login_socket_user, master_socket_user and "
    "userdb_socket_user instead (socket_user was removed: every socket has its own owner)",
    "dovecot.socket_group": "client_socket_group, login_socket_group, master_socket_group and "
    "userdb_socket_group instead (socket_group was removed: every socket has its own group)",
}


#: Fields of :class:`~mailwarden.config.Config` that are not tables of the file:
#: where it was read from, and the ``-o`` overrides laid over it.
META_FIELDS = frozenset({"source", "overrides"})


def unknown_key(key: str, known: set[str] | frozenset[str]) -> str:
    """What an unknown key is told: the closest known name first, when one is close."""
    import difflib  # noqa: PLC0415 - only on this error path (checkpassword stays lean)

    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f"one of the keys {', '.join(sorted(known))} (unknown key{hint})"


def build(cls: type[S], data: Any, prefix: str) -> S:
    """``cls`` from its TOML table ``data``; ``prefix`` is its key path plus a dot."""
    if not isinstance(data, dict):
        raise InvalidValue(prefix.rstrip(".") or "<top>", "a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if f"{prefix}{key}" in RETIRED_KEYS:
            raise InvalidValue(f"{prefix}{key}", RETIRED_KEYS[f"{prefix}{key}"])
        if key not in known:
            raise InvalidValue(f"{prefix}{key}", unknown_key(str(key), known - META_FIELDS))
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        kwargs[f.name] = convert(hints[f.name], data[f.name], f"{prefix}{f.name}")
    obj = cls(**kwargs)
    check_pairs(obj, prefix.rstrip("."))
    obj.check(prefix.rstrip("."))
    return obj


#: A secret key ``x`` has a companion ``x_file`` (config/secrets.py reads it).
FILE_SUFFIX = "_file"


def pairs(section: object) -> list[tuple[str, str]]:
    """``(x, x_file)`` for every secret pair of a section dataclass: a string field
    ``x_file`` beside a string field ``x``."""
    names = {f.name: f.type for f in fields(section)}  # type: ignore[arg-type]
    return [
        (name.removesuffix(FILE_SUFFIX), name)
        for name, tp in names.items()
        if name.endswith(FILE_SUFFIX)
        and names.get(name.removesuffix(FILE_SUFFIX)) in (str, "str")
        and tp in (str, "str")
    ]


def check_pairs(section: object, key: str) -> None:
    """InvalidValue when both ``x`` and ``x_file`` of a pair are set."""
    for name, file_name in pairs(section):
        if getattr(section, name) and getattr(section, file_name):
            raise InvalidValue(
                f"{key}.{file_name}" if key else file_name,
                f"empty when {name} is set (one or the other)",
            )


def convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, Section):
        return build(tp, value, key + ".")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise InvalidValue(key, "one of " + ", ".join(repr(c) for c in choices))
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in get_args(tp):
            try:
                return convert(arg, value, key)
            except InvalidValue:
                continue
        raise InvalidValue(key, " or ".join(describe(a) for a in get_args(tp)))
    if origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        if not isinstance(value, list):
            raise InvalidValue(key, f"an array of {describe(item_tp)}")
        return tuple(convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _key_tp, val_tp = get_args(tp)
        if not isinstance(value, dict):
            raise InvalidValue(key, "a table")
        return {str(k): convert(val_tp, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise InvalidValue(key, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue(key, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidValue(key, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InvalidValue(key, "a string")
        return value
    if tp is type(None):
        raise InvalidValue(key, "nothing")
    raise InvalidValue(key, f"a value of type {tp!r}")


def describe(tp: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )
