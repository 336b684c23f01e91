"""The ban mirror: every ban of a Redis guard store, kept in each process's memory.

Whether a login's network is banned, and whether its account is protected, is
asked on every login. With the Redis store that was a round trip each time (issue
#18: one ``MGET`` per login was most of a two-worker HTTP login's cost), so each
process that serves logins keeps a copy of every ban and answers from it.

How it stays exact (:class:`~mailwarden.guard.stores.redis.RedisStore` does the
I/O): every ban and unban is published on ``P bans-changed`` in the transaction
that writes it (:func:`ban_change`). The store's subscription task subscribes
first, then loads every ban (the ``P bans`` index) with :meth:`BanMirror.load`,
then applies each message in order with :meth:`BanMirror.apply`. Subscribing
before loading means no change is missed: changes published during the load are
applied after it, and as each is a plain set or delete, replaying one the load
already saw ends in the same state. While the subscription is down the mirror is
not :attr:`~BanMirror.active` (the store asks Redis, as before), and it is loaded
afresh after every reconnection. A ban another node makes is seen here once its
message arrives. A message that does not parse, or more than :data:`MIRROR_LIMIT`
bans, turn the mirror off until the next reconnection. Bans written to Redis by
anything but mailwarden are not seen until then.

Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

#: The mirror is given up (the store asks Redis on every login) beyond this many bans.
MIRROR_LIMIT = 1_000_000

Entry = tuple[float, str]  # expires (UNIX time), rule


def ban_change(target: str | None, expires: float | None, rule: str) -> str:
    """A ``bans-changed`` message: a ban of ``target`` until ``expires``, its lifting
    (``expires`` None), or the lifting of every ban (``target`` None)."""
    return json.dumps({"target": target, "expires": expires, "rule": rule})


def parse_ban(value: bytes | str | None) -> Entry | None:
    """A ``P ban:<target>`` value, ``"<expires> <rule>"``; None when absent or unreadable."""
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    expires, _, rule = text.partition(" ")
    try:
        return float(expires), rule
    except ValueError:
        return None


class BanMirror:
    """Every ban, target -> (expires, rule), while :attr:`active`."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.active = False

    def load(self, entries: dict[str, Entry]) -> bool:
        """Start from ``entries`` (every ban, just read); False (and not active) when
        there are more than the mirror holds."""
        self.drop()
        if len(entries) > MIRROR_LIMIT:
            return False
        self.entries, self.active = entries, True
        return True

    def drop(self) -> None:
        self.active = False
        self.entries = {}

    def banned(self, targets: Sequence[str], now: float) -> str | None:
        """The first of ``targets`` banned at ``now`` (only while :attr:`active`)."""
        entries = self.entries
        for target in targets:
            entry = entries.get(target)
            if entry is not None and entry[0] > now:
                return target
        return None

    def apply(self, data: str) -> str | None:
        """One published change; what was wrong with it when it does not parse (the
        mirror is then dropped), else None."""
        try:
            change = json.loads(data)
            target, expires, rule = change["target"], change["expires"], change["rule"]
            if target is not None and not isinstance(target, str):
                raise TypeError("target is not a string")
            if expires is not None:
                expires = float(expires)
            rule = str(rule)
        except (ValueError, KeyError, TypeError) as exc:
            self.drop()
            return str(exc) or type(exc).__name__
        entries = self.entries
        if target is None:
            entries.clear()
        elif expires is None:
            entries.pop(target, None)
        else:
            old = entries.get(target)
            if old is None or old[0] < expires:
                entries[target] = (expires, rule)
            if len(entries) > MIRROR_LIMIT:
                self.drop()
        return None
