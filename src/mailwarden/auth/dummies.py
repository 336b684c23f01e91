"""Dummy verifications that cost what this site's real ones cost.

An unknown user (or an account without a usable password) must take as long to
refuse as a wrong password on a real account, or the time of a reply says which
names exist. A dummy hash in the *policy* scheme is not enough: a site that
imported its accounts has mostly other values (SHA512-CRYPT at about 3 ms where the
policy's ARGON2ID takes about 260 ms), and every unknown name would stand out.

So the engine tells :class:`DummyHashes` about the stored values it meets (a sample
of the directory at start, then every account it verifies), grouped by *cost
profile* (algorithm and work factors: two values with one profile take the same
time). An unknown name is verified against a value of one of those profiles, chosen
from a keyed digest of the name with the profiles' shares as weights: the same
name always costs the same (as an account would), and over many names the costs
follow the site's own mix. Until anything is known, the policy's dummy hash is used.

Why not a reply held to a fixed deadline: the deadline would have to exceed the
slowest real verification under load, every refusal would pay it, and a loaded
server that misses it would leak again; matching the work keeps both sides equal
under any load. The representative of an expensive profile is the stored value of a
real account (its work factors are what must match): verifying a guess against it
only ever costs time, because the verdict is thrown away (the unknown name is refused
whatever it says), and these schemes compare fixed-size digests. A cheap profile
(``{PLAIN}``, salted SHA...) is represented by a fresh value of its scheme instead,
so that no comparison ever runs against a real plaintext. No value leaves the
process, and none is logged (StoredHash hides its data in repr).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import secrets
from collections.abc import Callable

from mailwarden import schemes
from mailwarden.directories.base import Directory
from mailwarden.errors import SchemeError, TemporaryFailure
from mailwarden.model import Account
from mailwarden.schemes.base import HashPolicy, StoredHash
from mailwarden.schemes.common import Profile

log = logging.getLogger("mailwarden.auth")

#: How many accounts' profiles are remembered (the oldest forgotten first).
ACCOUNTS_LIMIT = 4096
#: How many accounts are read from the directory at start.
SAMPLE_SIZE = 256


class DummyHashes:
    """The site's cost profiles, and a dummy value for any name (module docstring)."""

    def __init__(self, *, limit: int = ACCOUNTS_LIMIT) -> None:
        self.limit = limit
        self._key = secrets.token_bytes(32)
        # uid -> (stored value text, its profile); insertion order = age
        self._accounts: collections.OrderedDict[str, tuple[str, Profile]] = (
            collections.OrderedDict()
        )
        self._shares: collections.Counter[Profile] = collections.Counter()
        self._examples: dict[Profile, StoredHash] = {}
        self._order: list[tuple[Profile, int]] | None = None
        self._sampling: asyncio.Task[None] | None = None
        self._source: tuple[Directory, Callable[[Account | None], StoredHash | None]] | None = None
        self._fallback: tuple[HashPolicy, StoredHash] | None = None

    def observe(self, uid: str, value: str, stored: StoredHash) -> None:
        """Account ``uid`` has the stored ``value`` (parsed: ``stored``)."""
        known = self._accounts.get(uid)
        if known is not None and known[0] == value:
            return
        profile = schemes.cost_profile(stored)
        if profile is None:
            return
        if known is not None:
            self._forget(uid)
        elif len(self._accounts) >= self.limit:
            self._forget(next(iter(self._accounts)))
        self._accounts[uid] = (value, profile)
        self._shares[profile] += 1
        if profile not in self._examples:
            self._examples[profile] = stored if schemes.is_heavy(stored) else _fresh(stored)
        self._order = None

    def _forget(self, uid: str) -> None:
        _, profile = self._accounts.pop(uid)
        self._shares[profile] -= 1
        if self._shares[profile] <= 0:
            del self._shares[profile]
            del self._examples[profile]
        self._order = None

    def sample_from(
        self, directory: Directory, parse: Callable[[Account | None], StoredHash | None]
    ) -> None:
        """Where :meth:`sample` reads: at the first unknown name, or at once with
        :meth:`start_sampling`."""
        self._source = (directory, parse)

    def start_sampling(self) -> asyncio.Task[None]:
        """:meth:`sample` in the background (the daemon, at start): the first unknown
        name need not wait for it. :meth:`value_for` waits for it if it does come first."""
        assert self._source is not None, "sample_from() first"
        self._sampling = asyncio.get_running_loop().create_task(self.sample(*self._source))
        return self._sampling

    async def value_for(self, name: str, policy: HashPolicy) -> StoredHash:
        """What to verify an unknown ``name``'s password against: :meth:`pick`, or the
        policy's dummy hash while nothing is known (an empty directory).

        A one-shot command (checkpassword, pam, auth test) samples here, at its first
        unknown name, and not at start: most of its runs never need it, and a thread
        started beside the login's own would not fit in the 256 MiB of address space
        Dovecot's auth process gives checkpassword (``vsz_limit``)."""
        if self._sampling is None and self._source is not None:
            self._sampling = asyncio.get_running_loop().create_task(self.sample(*self._source))
        sampling = self._sampling
        if sampling is not None and not sampling.done():
            await asyncio.shield(sampling)  # not the policy's cost while the site's is learnt
        dummy = self.pick(name)
        if dummy is not None:
            return dummy
        if self._fallback is None or self._fallback[0] != policy:
            made = await asyncio.get_running_loop().run_in_executor(
                None, schemes.dummy_hash, policy
            )
            self._fallback = (policy, made)
        return self._fallback[1]

    async def sample(
        self, directory: Directory, parse: Callable[[Account | None], StoredHash | None]
    ) -> None:
        """Observe up to SAMPLE_SIZE accounts of ``directory`` (at start: logins
        refresh the picture as they go)."""
        try:
            accounts = await directory.sample(SAMPLE_SIZE)
        except TemporaryFailure as exc:
            log.warning("cannot sample stored passwords for the dummy hash: %s", exc)
            return
        for account in accounts:
            if account.password and (stored := parse(account)) is not None:
                self.observe(account.uid, account.password, stored)

    @property
    def shares(self) -> dict[Profile, int]:
        """How many remembered accounts have each profile."""
        return dict(self._shares)

    def pick(self, name: str) -> StoredHash | None:
        """A stored value whose verification costs what one of this site's accounts'
        does, the same for the same ``name``; None while no account is known."""
        order = self._order
        if order is None:
            # Largest share first, ties in a fixed order: a name keeps its profile
            # while the shares move a little.
            order = sorted(self._shares.items(), key=lambda kv: (-kv[1], repr(kv[0])))
            self._order = order
        if not order:
            return None
        total = sum(count for _, count in order)
        digest = hashlib.blake2b(name.lower().encode(), key=self._key, digest_size=8).digest()
        # A point in [0, total) proportional to the digest, not a remainder: when the
        # total moves a little, few names change profile.
        point = (int.from_bytes(digest, "big") * total) >> 64
        for profile, count in order:
            if point < count:
                return self._examples[profile]
            point -= count
        raise AssertionError("unreachable: point < total")


def _fresh(stored: StoredHash) -> StoredHash:
    """A value of ``stored``'s scheme and profile for a random password (``stored``
    itself when the scheme cannot make one alone, or makes another profile: ``{MD5}``
    generates MD5-CRYPT where the stored value may be a plain MD5 digest)."""
    try:
        made = schemes.parse(schemes.generate(secrets.token_hex(12).encode(), stored.scheme))
    except (SchemeError, ValueError):
        return stored
    return made if schemes.cost_profile(made) == schemes.cost_profile(stored) else stored
