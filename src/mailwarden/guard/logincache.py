"""The verified-login cache: repeat logins with the same password cost microseconds.

After an expensive verification succeeds, the engine remembers a keyed digest
(BLAKE2b-256 with a random key) of ``(uid, stored password value, policy,
password)``. A later login looks the account up as always, computes the same
digest and, if it is remembered and fresh, skips the hash. Why this shape (docs/guard.md):

* **It can never turn a wrong password into an accept**: the digest covers the
  password itself, and a 256-bit keyed digest does not collide.
* **A password change invalidates it at once, on every node, without any message**:
  the stored value (the hash string read from the directory on *this* login) is
  part of the digest, so a changed password, even one changed behind mailwarden's
  back in LDAP, can never match an old entry. Status, service switches and
  networks are not cached at all: they are checked on the fresh account each time.
* **No password is held in clear**, and the key is random per process and never
  leaves it, so the entries are useless outside this process. Several workers
  each keep their own cache (each verifies once); none is shared through Redis.

Explicit flushes (admin, ``CACHE-FLUSH``) drop a user's entries; with a shared
store they reach every process through the guard's flush fan-out.

App passwords never enter this cache (auth/apppasswords.py): verifying one costs a
keyed digest, no more than a hit here, and it is checked against the account as read
for each login, so a revoked or expired one can have no entry that outlives it.

Wrong passwords are remembered too (``rejected``): a phone retrying its stale
password every few minutes costs one hash per ``ttl``, not one per attempt. A hit
only ever refuses, the stored value is in the key (a password change ends it),
and unknown names get the same treatment, so a repeat is equally fast for both.
Kept in its own bounded LRU, so a flood of wrong guesses cannot evict verified
logins.

A small *negative* cache remembers login names that match no account for
``negative_ttl`` seconds, so credential stuffing with random names does not hit
the directory every time. It never skips the dummy verification (the timing of
an unknown user stays that of a wrong password). No write may leave a name
refused once it resolves (docs/guard.md, "The negative cache"): each entry is kept
under the directory's *data version* at the time of the lookup (SQLite's ``PRAGMA
data_version``, which changes when any process commits), and is void as soon as the
version differs, so any write — this process, the CLI, an import, the mail gateway —
ends every entry within the directory's recheck interval (10 ms). A directory that
has no such signal (LDAP: another node or tool may write) gets no version, and its
entries live at most :data:`UNSIGNALLED_NEGATIVE_TTL` seconds. Explicit flushes
(admin, ``CACHE-FLUSH``, the guard's fan-out) drop them too.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from mailwarden.config import CacheConfig

#: Longest life of a negative entry when the directory cannot say that it changed
#: (LDAP): a name created by another node or tool is refused at most this long.
UNSIGNALLED_NEGATIVE_TTL = 1.0


class LoginCache:
    """Verified-login digests and unknown login names, both bounded LRUs with expiry."""

    def __init__(
        self,
        config: CacheConfig,
        *,
        policy_tag: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._policy = policy_tag.encode()
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._by_user: dict[str, set[bytes]] = {}
        # login name -> (expiry, directory data version when it was looked up)
        self._unknown: OrderedDict[str, tuple[float, int | None]] = OrderedDict()
        self._rejected: OrderedDict[bytes, float] = OrderedDict()
        self._linked: list[Callable[[Iterable[str] | None], object]] = []
        self.hits = 0
        self.misses = 0
        self.rejected_hits = 0

    def reconfigure(self, config: CacheConfig, *, policy_tag: str) -> None:
        """SIGHUP: new limits and policy; every entry is dropped."""
        self.config = config
        self._policy = policy_tag.encode()
        self.flush()

    @property
    def enabled(self) -> bool:
        return self.config.enabled and self.config.ttl > 0

    def _digest(self, uid: str, stored: str, password: bytes, kind: bytes = b"ok") -> bytes:
        parts = (kind, uid.lower().encode(), stored.encode(), self._policy, password)
        message = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
        # Keyed BLAKE2b is a MAC like HMAC-SHA256, and for short inputs it keeps the
        # GIL: OpenSSL's HMAC releases it on every call, and getting it back behind
        # the hashing threads cost ~100 us per login under load (bench/compare).
        return hashlib.blake2b(message, key=self._key, digest_size=32).digest()

    def verified(self, uid: str, stored: str, password: bytes) -> bool:
        """Whether this exact password was verified against this stored value recently."""
        if not self.enabled:
            return False
        digest = self._digest(uid, stored, password)
        entry = self._verified.get(digest)
        if entry is None or entry[1] <= self.clock():
            self.misses += 1
            return False
        self._verified.move_to_end(digest)
        self.hits += 1
        return True

    def remember(self, uid: str, stored: str, password: bytes) -> None:
        if not self.enabled:
            return
        user = uid.lower()
        digest = self._digest(user, stored, password)
        self._verified[digest] = (user, self.clock() + self.config.ttl)
        self._verified.move_to_end(digest)
        self._by_user.setdefault(user, set()).add(digest)
        while len(self._verified) > self.config.max_entries:
            old, (old_user, _) = self._verified.popitem(last=False)
            self._discard(old_user, old)

    def _discard(self, user: str, digest: bytes) -> None:
        digests = self._by_user.get(user)
        if digests is not None:
            digests.discard(digest)
            if not digests:
                del self._by_user[user]

    # ------------------------------------------------------------ rejected passwords

    def rejected(self, name: str, stored: str, password: bytes) -> bool:
        """Whether this exact password was recently found wrong for this stored value
        (``stored`` empty: for this unknown login name)."""
        if not self.enabled:
            return False
        digest = self._digest(name, stored, password, b"no")
        expiry = self._rejected.get(digest)
        if expiry is None or expiry <= self.clock():
            return False
        self.rejected_hits += 1
        return True

    def remember_rejected(self, name: str, stored: str, password: bytes) -> None:
        """Remember a wrong password; a repeat is then refused without hashing.

        Safe by construction: a hit only ever refuses. It is kept for unknown names
        exactly as for accounts, so that a repeat is fast for both and timing
        still does not tell them apart.
        """
        if not self.enabled:
            return
        digest = self._digest(name, stored, password, b"no")
        self._rejected[digest] = self.clock() + self.config.ttl
        self._rejected.move_to_end(digest)
        while len(self._rejected) > self.config.max_entries:
            self._rejected.popitem(last=False)

    # ------------------------------------------------------------ unknown names

    def unknown(self, login: str, version: int | None = None) -> bool:
        """Whether ``login`` matched no account within the last ``negative_ttl`` seconds,
        at the directory data ``version`` (None: the directory has none)."""
        if not self.config.enabled or self.config.negative_ttl <= 0:
            return False
        name = login.lower()
        entry = self._unknown.get(name)
        if entry is None:
            return False
        expiry, seen = entry
        if expiry <= self.clock() or seen != version:
            del self._unknown[name]
            return False
        return True

    def remember_unknown(self, login: str, version: int | None = None) -> None:
        """Remember that ``login`` matched nothing in a lookup that began at directory
        data ``version`` (read *before* the lookup, so that a write that raced with
        it voids the entry)."""
        if not self.config.enabled or self.config.negative_ttl <= 0:
            return
        name = login.lower()
        ttl = self.config.negative_ttl
        if version is None:
            ttl = min(ttl, UNSIGNALLED_NEGATIVE_TTL)
        self._unknown[name] = (self.clock() + ttl, version)
        self._unknown.move_to_end(name)
        while len(self._unknown) > self.config.max_entries:
            self._unknown.popitem(last=False)

    # ------------------------------------------------------------ flush

    def link(self, drop: Callable[[Iterable[str] | None], object]) -> None:
        """Have every :meth:`flush` also call ``drop(users)``: a cache of looked-up
        accounts kept beside this one (an SQL directory's, handed over by app.py), so
        that every flush, explicit or from a change feed, reaches both."""
        self._linked.append(drop)

    def flush(self, users: Iterable[str] | None = None) -> int:
        r"""Forget the entries of ``users`` (uids or login names; None: everything),
        and theirs in every :meth:`link`\ ed cache. Returns how many entries of
        this cache were dropped."""
        if users is not None:
            users = list(users)
        for drop in self._linked:
            drop(users)
        if users is None:
            n = len(self._verified) + len(self._unknown) + len(self._rejected)
            self._verified.clear()
            self._by_user.clear()
            self._unknown.clear()
            self._rejected.clear()
            return n
        n = 0
        for name in users:
            user = name.lower()
            for digest in self._by_user.pop(user, set()):
                if self._verified.pop(digest, None) is not None:
                    n += 1
            if self._unknown.pop(user, None) is not None:
                n += 1
        return n

    def __len__(self) -> int:
        return len(self._verified)
