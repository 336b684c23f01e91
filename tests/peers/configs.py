"""Builders for the configuration files of the peer tests: mailwarden's TOML and
Dovecot's ``dovecot.conf``, rendered from keyword arguments instead of copied blocks.

:func:`daemon_toml` starts from what every ``mailwarden serve`` of the peer tests
shares (:data:`DAEMON`: a SQLite file, no rehash, the control socket and the three
Dovecot sockets under ``run/``, no failure delay); each keyword names a section whose
keys are laid over that section (a key set to ``None`` is left out). Tables inside a
section are TOML sub-tables, lists of tables are arrays of tables.

:func:`dovecot_conf` starts from what every private Dovecot needs (its directories
under ``root``, no TLS, no anvil penalty, which would slow down every failed attempt
by 2-15 s); passdbs, userdbs and services are nested blocks given as mappings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Table = Mapping[str, Any]

DOVECOT_SOCKETS: Table = {
    "client_socket": "run/auth-client",
    "master_socket": "run/auth-master",
    "userdb_socket": "run/auth-userdb",
}

DAEMON: Mapping[str, Table] = {
    "directory": {"path": "mailwarden.db"},
    "passwords": {"rehash": "never"},
    "server": {"control_socket": "run/control"},
    "dovecot": {**DOVECOT_SOCKETS, "failure_delay": 0},
}
"""What every ``mailwarden serve`` of the peer tests shares."""

GUARD_RULE_IP: Table = {"name": "ip", "period": 86400.0, "threshold": 3}
"""Three failures a day from one address: a ban (the guard tests' rule). A day, not a
minute: the rule's sliding estimate counts three failures that straddle the end of
its window as 2.99 (current window + the previous one's share), so with a minute
the ban depended on the wall clock (a CI run failed so); a day makes that a few
seconds in 86,400."""


# --------------------------------------------------------------------------- TOML


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML value for {value!r}")


def _is_tables(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _table(path: str, table: Table) -> list[str]:
    """``[path]`` and its keys, then its sub-tables and arrays of tables."""
    lines = [f"[{path}]"]
    nested: list[tuple[str, Any]] = []
    for name, value in table.items():
        if value is None:
            continue
        if isinstance(value, Mapping) or _is_tables(value):
            nested.append((name, value))
        else:
            lines.append(f"{_key(name)} = {_value(value)}")
    for name, value in nested:
        sub = f"{path}.{_key(name)}"
        if isinstance(value, Mapping):
            lines += ["", *_table(sub, value)]
        else:
            for item in value:
                body = _table(sub, item)
                lines += ["", f"[{body[0]}]", *body[1:]]
    return lines


def toml(sections: Mapping[str, Table]) -> str:
    """TOML text of ``sections`` (section -> keys), in the order given."""
    blocks = ["\n".join(_table(_key(name), table)) for name, table in sections.items()]
    return "\n\n".join(blocks) + "\n"


def daemon_toml(**sections: Table | None) -> str:
    """:data:`DAEMON` with each keyword's keys laid over the section of that name.

    ``dovecot=None`` leaves a whole section out; ``passwords={"rehash": None}`` one key.
    """
    merged: dict[str, Table] = {}
    for name in [*DAEMON, *(n for n in sections if n not in DAEMON)]:
        if name in sections and sections[name] is None:
            continue
        table = {**DAEMON.get(name, {}), **(sections.get(name) or {})}
        merged[name] = {k: v for k, v in table.items() if v is not None}
    return toml(merged)


# --------------------------------------------------------------------------- dovecot.conf


Block = Mapping[str, Any]
"""A ``dovecot.conf`` block: setting -> value, or section name -> nested block."""


def _conf(block: Block, depth: int) -> list[str]:
    pad = "  " * depth
    lines: list[str] = []
    for name, value in block.items():
        if isinstance(value, Mapping):
            lines += [f"{pad}{name} {{", *_conf(value, depth + 1), f"{pad}}}"]
        else:
            lines.append(f"{pad}{name} = {value}".rstrip())
    return lines


NO_PENALTY: Block = {"service anvil": {"unix_listener anvil-auth-penalty": {"mode": "0"}}}
"""No per-IP penalty (mailwarden leaves it to the guard); without this, every failed
attempt would make Dovecot's next answers 2-15 s slower."""


def dovecot_conf(
    root: Path,
    *,
    protocols: str = "",
    settings: Mapping[str, object] | None = None,
    passdbs: Sequence[Block] = (),
    userdbs: Sequence[Block] = (),
    services: Mapping[str, Block] | None = None,
) -> str:
    """A private ``dovecot.conf``: its run, state and log under ``root``, no TLS and no
    anvil penalty, then ``settings``, the passdbs and userdbs in order, and
    ``services`` (``service <name> { ... }``)."""
    top: dict[str, Any] = {
        "protocols": protocols,
        "base_dir": f"{root}/run",
        "state_dir": f"{root}/state",
        "log_path": f"{root}/dovecot.log",
        "ssl": "no",
        **(settings or {}),
    }
    lines = _conf(top, 0)
    for kind, blocks in (("passdb", passdbs), ("userdb", userdbs)):
        for block in blocks:
            lines += _conf({kind: block}, 0)
    lines += _conf(NO_PENALTY, 0)
    lines += _conf({f"service {name}": block for name, block in (services or {}).items()}, 0)
    return "\n".join(lines) + "\n"


def listeners(modes: Mapping[str, str], **settings: str) -> Block:
    """A service block with ``settings`` and one ``unix_listener`` per name -> mode."""
    return {**settings, **{f"unix_listener {name}": {"mode": mode} for name, mode in modes.items()}}


def passwd_file(path: Path, **settings: str) -> Block:
    return {"driver": "passwd-file", "args": str(path), **settings}
