"""``{ARGON2I}`` and ``{ARGON2ID}``: argon2 PHC strings, checked with argon2-cffi.

The data is libsodium's string, e.g. ``$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>``
(unpadded base64, 16-byte salt, 32-byte hash). argon2-cffi reads and writes exactly
that format and releases the GIL while it works. Strength rank 5; always heavy.

Verification, like libsodium's ``crypto_pwhash_str_verify``, takes the variant from
the data, so ``{ARGON2I}$argon2id$…`` verifies. Unlike libsodium we refuse (as
malformed) a value asking for more than :data:`MAX_MEMORY_KIB`: the cost parameters
come from stored data, and one bad row must not make every login allocate gigabytes.

Generation without ``rounds`` uses the policy (memory, time, parallelism). With
``rounds`` it follows doveadm (password-scheme-sodium.c): ``rounds`` is the time
cost and picks libsodium's memory limit — ARGON2ID: 64 MiB below 3, 256 MiB at 3,
1 GiB from 4; ARGON2I: 32 MiB below 6, 128 MiB below 8, 512 MiB from 8 — with
parallelism 1. ARGON2ID's time cost is then raised to at least 3 (doveadm works
around an old libsodium bug that way). libsodium refuses ARGON2I below time cost 3
(doveadm dies with "Invalid argument"); we raise it to 3 instead.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from argon2.exceptions import VerificationError, VerifyMismatchError
from argon2.low_level import Type, hash_secret, verify_secret

from mailwarden.errors import MalformedHash
from mailwarden.schemes.base import HashPolicy, StoredHash
from mailwarden.schemes.common import BaseScheme, Profile, chosen

SALT_SIZE = 16
HASH_SIZE = 32
#: The largest memory cost we accept from stored data: 4 GiB, four times libsodium's
#: "sensitive" limit that ``doveadm pw -r 4`` uses.
MAX_MEMORY_KIB = 4 * 1024 * 1024
ARGON2I_MIN_TIME = 3

_MIB = 1024
# (minimum rounds, memory KiB) per variant, highest first: libsodium's
# OPSLIMIT/MEMLIMIT pairs SENSITIVE, MODERATE, INTERACTIVE.
_DOVEADM_MEMORY = {
    "ARGON2ID": ((4, 1024 * _MIB), (3, 256 * _MIB), (0, 64 * _MIB)),
    "ARGON2I": ((8, 512 * _MIB), (6, 128 * _MIB), (0, 32 * _MIB)),
}
_TYPES = {"$argon2id$": Type.ID, "$argon2i$": Type.I}
_PARAMETERS = re.compile(
    r"\$argon2(?:id|i)\$(?:v=[0-9]{1,10}\$)?m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,10})\$"
)


@dataclass(frozen=True, slots=True)
class Costs:
    memory_kib: int
    time_cost: int
    parallelism: int


def parse_costs(text: str) -> tuple[Type, Costs]:
    """The variant and cost parameters of a PHC string; MalformedHash if unreadable."""
    kind = next((t for prefix, t in _TYPES.items() if text.startswith(prefix)), None)
    match = _PARAMETERS.match(text)
    if kind is None or match is None:
        raise MalformedHash("not an $argon2i$ / $argon2id$ value")
    costs = Costs(int(match[1]), int(match[2]), int(match[3]))
    if costs.memory_kib > MAX_MEMORY_KIB:
        raise MalformedHash(f"argon2 memory cost above {MAX_MEMORY_KIB} KiB refused")
    return kind, costs


@dataclass(frozen=True, slots=True, kw_only=True)
class Argon2(BaseScheme):
    """One argon2 variant (``type``) for generation; either for verification."""

    type: Type

    def costs(self, rounds: int | None, policy: HashPolicy) -> Costs:
        """The parameters :meth:`generate_raw` uses (see the module docstring)."""
        if rounds is None or rounds == 0:
            costs = Costs(
                policy.argon2_memory_kib, policy.argon2_time_cost, policy.argon2_parallelism
            )
        else:
            time_cost = chosen(rounds, 0)
            memory = next(m for low, m in _DOVEADM_MEMORY[self.name] if time_cost >= low)
            costs = Costs(memory, max(time_cost, 3) if self.type is Type.ID else time_cost, 1)
        if self.type is Type.I and costs.time_cost < ARGON2I_MIN_TIME:
            costs = Costs(costs.memory_kib, ARGON2I_MIN_TIME, costs.parallelism)
        return costs

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        costs = self.costs(rounds, policy)
        return hash_secret(
            password,
            secrets.token_bytes(SALT_SIZE),
            time_cost=costs.time_cost,
            memory_cost=costs.memory_kib,
            parallelism=costs.parallelism,
            hash_len=HASH_SIZE,
            type=self.type,
        )

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        kind, _ = parse_costs(raw.decode("ascii", "replace"))
        try:
            return verify_secret(raw, password, kind)
        except VerifyMismatchError:
            return False
        except VerificationError as exc:
            raise MalformedHash(f"argon2 cannot use this value: {exc}") from exc

    def profile(self, stored: StoredHash) -> Profile:
        kind, costs = parse_costs(self.decode(stored).decode("ascii", "replace"))
        name = "ARGON2ID" if kind is Type.ID else "ARGON2I"
        return Profile(name, self.strength, (costs.memory_kib, costs.time_cost))

    def target(self, policy: HashPolicy) -> Profile:
        costs = self.costs(None, policy)
        return Profile(self.name, self.strength, (costs.memory_kib, costs.time_cost))


ARGON2I = Argon2(name="ARGON2I", family="ARGON2I", strength=5, heavy=True, type=Type.I)
ARGON2ID = Argon2(name="ARGON2ID", family="ARGON2ID", strength=5, heavy=True, type=Type.ID)
