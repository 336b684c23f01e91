"""The state store's records as table rows, and back: one column order for the SQLite
and the SQL store (their ``SELECT`` lists and ``INSERT``/``UPDATE`` parameters follow it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mailwarden.state.base import Administrator, ApiToken, SecondFactor


def admin_of(v: Sequence[Any]) -> Administrator:
    """``name, password, role, created``."""
    return Administrator(name=v[0], password=v[1], role=v[2], created=float(v[3]))


def token_of(v: Sequence[Any]) -> ApiToken:
    """``name, digest, scope, created, created_by, expires``."""
    expires = None if v[5] is None else float(v[5])
    return ApiToken(
        name=v[0], digest=v[1], scope=v[2], created=float(v[3]), created_by=v[4], expires=expires
    )


def factor_of(v: Sequence[Any]) -> SecondFactor:
    """``owner, secret, confirmed, last_step, recovery, failures, failed_since, version``."""
    return SecondFactor(
        owner=v[0],
        secret=v[1],
        confirmed=bool(v[2]),
        last_step=int(v[3]),
        recovery=tuple(json.loads(v[4])),
        failures=int(v[5]),
        failed_since=float(v[6]),
        version=int(v[7]),
    )


def factor_columns(f: SecondFactor) -> tuple[str, int, int, str, int, float]:
    """What a write stores of ``f``: ``secret, confirmed, last_step, recovery,
    failures, failed_since`` (owner and version are the write's own)."""
    return (
        f.secret,
        int(f.confirmed),
        f.last_step,
        json.dumps(list(f.recovery)),
        f.failures,
        f.failed_since,
    )
