"""The password context: what a stored password value can do for a login.

In the manner of passlib's ``CryptContext``, one object knows the site's hashing
policy and answers every question about stored values, so the engine only
orchestrates:

* **verify** a password against an account's stored value (or, for an unknown
  name, against a dummy value that costs what this site's stored values cost:
  dummies.py), with the verified-login cache in front of expensive schemes and a
  directory that verifies by itself (:class:`~mailwarden.directories.base.PasswordChecker`,
  LDAP rebind) asked first;
* **credentials** for challenge-response SASL (CRAM-MD5, DIGEST-MD5, SCRAM, APOP):
  the account's, or deterministic fake ones for an unknown name, so that the
  exchange looks the same; and the check of a mechanism's proof against them;
* **rehash**: whether a value is weaker than the policy wants (and may be
  upgraded without locking out challenge-response clients), and the new value;
* **the parse memo**: parsing and classifying the same few stored values on every
  login costs more than the rest of a cached login, so each value is parsed once;
* **app passwords** (apppasswords.py): a value that is one of the account's app
  passwords, allowed for the service and not expired, passes in microseconds and
  its use is noted for a batched write; everything else is the main password,
  which an account set to app passwords only may use for the web page alone.

No directory reads and no policy decisions (status, services, networks) happen
here: those are the engine's and access.py's. The one write, the last use of app
passwords, is handed to a :class:`~mailwarden.auth.apppasswords.UseRecorder`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from typing import TypeAlias

from mailwarden import schemes
from mailwarden.auth.apppasswords import UseRecorder, UseWriter, main_password_allowed, matching
from mailwarden.auth.dummies import DummyHashes
from mailwarden.config import PasswordsConfig
from mailwarden.directories.base import PasswordChecker
from mailwarden.errors import SchemeError
from mailwarden.guard.logincache import LoginCache
from mailwarden.hashing.pool import Hasher
from mailwarden.model import (
    Account,
    CredentialKind,
    CredentialProof,
    CredentialUsed,
    LastUse,
    Password,
)
from mailwarden.schemes import scram
from mailwarden.schemes.base import StoredHash

log = logging.getLogger("mailwarden.auth")

# Mechanisms that need stored credentials (schemes.CREDENTIAL_SCHEMES) rather than a hash.
CHALLENGE_MECHANISMS = frozenset({"CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "APOP"})

#: Parsed stored passwords remembered by one context (then forgotten all at once).
PARSED_CACHE_SIZE = 10_000

# Byte lengths of the raw credentials each challenge-response scheme yields, used to
# shape fake credentials for unknown users so the exchange looks the same.
_FAKE_SHAPES: Mapping[str, int] = {"CRAM-MD5": 32, "HMAC-MD5": 32, "DIGEST-MD5": 16, "PLAIN": 16}
_SCRAM_DIGESTS: Mapping[str, str] = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}

_MAIN_PASSWORD = CredentialUsed(kind=CredentialKind.PASSWORD)

# A stored password parsed: the value, whether it is heavy to verify, whether the
# policy wants it rehashed.
_Parsed: TypeAlias = tuple[StoredHash, bool, bool]


class PasswordContext:
    """Verify, dummy-verify, credentials, rehash (module docstring)."""

    def __init__(
        self,
        *,
        hasher: Hasher,
        cache: LoginCache,
        config: PasswordsConfig,
        max_length: int,
        checker: PasswordChecker | None = None,
        challenge_mechanisms: frozenset[str] = frozenset(),
        record_uses: UseWriter | None = None,
    ) -> None:
        """``record_uses``: where the last uses of app passwords are written (the
        directory's ``record_app_password_uses``; None: nowhere)."""
        self.hasher = hasher
        self.cache = cache
        self.checker = checker
        self.app_password_uses = UseRecorder(record_uses or _nowhere)
        self.clock = time.time  # Unix seconds: app password expiry and last use
        self.dummies = DummyHashes()
        self._secret = secrets.token_bytes(32)
        self.reconfigure(config, max_length=max_length, challenge_mechanisms=challenge_mechanisms)

    def reconfigure(
        self,
        config: PasswordsConfig,
        *,
        max_length: int,
        challenge_mechanisms: frozenset[str],
    ) -> None:
        """The policy of a new configuration (at start and on SIGHUP)."""
        self.config = config
        self.policy = config.hash_policy()
        self.max_length = max_length
        # Challenge-response mechanisms some front end offers: their accounts'
        # credential-capable values are never rehashed into ones they cannot use.
        self.challenge_mechanisms = CHALLENGE_MECHANISMS & {m.upper() for m in challenge_mechanisms}
        # account.password -> parsed; the policy is fixed until the next reconfigure.
        self._parsed: dict[str, _Parsed | None] = {}

    # ------------------------------------------------------------------ parse memo

    def stored(self, account: Account | None) -> StoredHash | None:
        """The account's parsed password, or None (no account, no password, unusable)."""
        parsed = self._parse(account)
        return parsed[0] if parsed is not None else None

    def _parse(self, account: Account | None) -> _Parsed | None:
        """The account's parsed password, whether it is heavy to verify and whether the
        policy wants it rehashed, or None (no account, no password, unusable);
        remembered per stored value."""
        if account is None or not account.password:
            return None
        value = account.password
        try:
            return self._parsed[value]
        except KeyError:
            pass
        try:
            stored = schemes.parse(value, default_scheme=self.config.default_scheme)
        except SchemeError as exc:
            log.error("account %s has an unusable password value: %s", account.uid, exc)
            parsed = None
        else:
            weaker = self.config.rehash != "never" and schemes.needs_rehash(stored, self.policy)
            parsed = (stored, schemes.is_heavy(stored), weaker)
        if len(self._parsed) >= PARSED_CACHE_SIZE:
            self._parsed.clear()
        self._parsed[value] = parsed
        return parsed

    # ------------------------------------------------------------------ verify

    async def verify(
        self,
        password: Password,
        account: Account | None,
        name: str,
        *,
        service: str = "",
        remote_ip: str | None = None,
    ) -> bool:
        """Whether ``password`` proves ``account`` for ``service``
        (:meth:`verify_credential`)."""
        used = await self.verify_credential(
            password, account, name, service=service, remote_ip=remote_ip
        )
        return used is not None

    async def verify_credential(
        self,
        password: Password,
        account: Account | None,
        name: str,
        *,
        service: str = "",
        remote_ip: str | None = None,
    ) -> CredentialUsed | None:
        """Which credential ``password`` is: one of ``account``'s app passwords that
        may use ``service`` now (named), or its main password when the main password
        may use ``service``; None for neither (``name``: the login name it was found
        by). For no account, or no usable stored value, the same work is done
        against a dummy value and the answer is None. ``remote_ip``: where an app
        password's use came from."""
        if account is not None and account.app_passwords:
            now = self.clock()
            app = matching(password, account, service, now)
            if app is not None:
                # Bounded: the service and address are the client's words.
                use = LastUse(
                    at=int(now),
                    service=service.lower()[:64],
                    remote_ip=remote_ip[:64] if remote_ip is not None else None,
                )
                self.app_password_uses.note(account, app, use)
                return CredentialUsed(kind=CredentialKind.APP_PASSWORD, app_password=app.name)
        ok = await self._verify_main(password, account, name)
        # Refused only after the full verification: the time says nothing either way.
        if ok and account is not None and main_password_allowed(account, service):
            return _MAIN_PASSWORD
        return None

    async def _verify_main(self, password: Password, account: Account | None, name: str) -> bool:
        too_long = len(password.value) > self.max_length
        checker = self.checker
        if checker is not None and not too_long:
            # A directory that verifies by itself (LDAP rebind) answers True/False;
            # None means "check the stored value as usual". An unknown user is asked
            # about too (account None): the directory then does the same work
            # against an entry nobody has, instead of the dummy hash, whose cost
            # would differ from a bind and give the account away.
            verdict: bool | None = await checker.verify_password(account, password.value)
            if verdict is not None:
                return verdict and account is not None
        if account is not None and not account.password and "nopassword" in account.passdb_fields:
            # Dovecot's ``nopassword``: the passdb vouches for the login and any password
            # is accepted (e.g. an SQL query that checks the password itself and
            # returns ``NULL AS password, 'Y' AS nopassword``). As in Dovecot it counts
            # only with no stored password; status, services and networks still apply.
            return True
        parsed = self._parse(account) if not too_long else None
        if parsed is None:
            # Unknown user, no password, unusable hash: pay the same price anyway
            # (and remember the refusal as for an account, so a repeat costs the same).
            subject = account.uid if account is not None else name
            if self.cache.rejected(subject, "", password.value):
                return False
            if schemes.is_heavy(await self.dummy_verify(password, subject)):
                self.cache.remember_rejected(subject, "", password.value)
            return False
        assert account is not None
        # Only expensive schemes are cached: for the others a hash is as cheap as a hit.
        stored, cached, _ = parsed
        self.dummies.observe(account.uid, account.password, stored)
        cache = self.cache
        if cached and cache.verified(account.uid, account.password, password.value):
            return True
        if cached and cache.rejected(account.uid, account.password, password.value):
            return False
        try:
            ok = await self.hasher.verify(password.value, stored, user=name, heavy=cached)
        except SchemeError as exc:
            log.error("account %s: password value cannot be verified: %s", account.uid, exc)
            return False
        if cached:
            if ok:
                cache.remember(account.uid, account.password, password.value)
            else:
                cache.remember_rejected(account.uid, account.password, password.value)
        return ok

    async def dummy_verify(self, password: Password, name: str) -> StoredHash:
        """Verify ``password`` against a value as costly as ``name``'s would be if it
        existed (dummies.py); the verdict is discarded. Returns the value used."""
        dummy = await self.dummies.value_for(name, self.policy)
        with contextlib.suppress(SchemeError):  # a value that verifies nothing cost as much
            await self.hasher.verify(password.value, dummy)
        return dummy

    # ------------------------------------------------------------------ challenge-response

    def credentials(self, account: Account | None, name: str, scheme: str) -> bytes:
        """``account``'s stored credentials in ``scheme`` (``name``: the normalised
        login), or deterministic fake ones when there is no account or its stored
        scheme cannot yield ``scheme``: the exchange then proceeds identically and
        fails at the end, so it cannot be used to enumerate accounts."""
        stored = self.stored(account)
        if stored is not None:
            try:
                creds = schemes.credentials(stored, scheme, user=name)
            except SchemeError:
                creds = None
            if creds is not None:
                return creds
        return self.fake_credentials(name, scheme)

    async def verify_proof(
        self,
        proof: CredentialProof,
        account: Account | None,
        name: str | None,
        *,
        service: str = "",
    ) -> bool:
        """Whether a mechanism's ``proof`` holds against ``account``'s credentials
        (the main password's: app passwords are stored as digests, which no
        challenge-response mechanism can use), and the main password may use
        ``service``; against fake ones (the same work) when there are none, and then
        False."""
        ok = await self._verify_proof(proof, account, name)
        return ok and account is not None and main_password_allowed(account, service)

    async def _verify_proof(
        self, proof: CredentialProof, account: Account | None, name: str | None
    ) -> bool:
        stored = self.stored(account)
        if stored is not None and name is not None:
            # The stored scheme itself first (its credentials are what they are), then
            # PLAIN: a SCRAM proof made against credentials derived from a plaintext
            # with a salt of that moment verifies against the plaintext.
            order = sorted(proof.schemes, key=lambda s: (s != stored.scheme, s != "PLAIN"))
            for scheme in order:
                creds = schemes.credentials(stored, scheme, user=name)
                if creds is not None:
                    return await self._check_proof(proof, scheme, creds)
        # No usable credentials: check against fake ones so the work done is the same.
        scheme = proof.schemes[0] if proof.schemes else "PLAIN"
        await self._check_proof(proof, scheme, self.fake_credentials(name or "", scheme))
        return False

    async def _check_proof(self, proof: CredentialProof, scheme: str, credentials: bytes) -> bool:
        # A proof checked against a plaintext password may run PBKDF2 (SCRAM): keep
        # it off the event loop, under the hasher's queue limit like any hash.
        return await self.hasher.run(lambda: proof.check(scheme, credentials))

    def fake_credentials(self, user: str, scheme: str) -> bytes:
        """Credentials for a name with none: stable per name and scheme, shaped
        like real ones, derived from a secret that never leaves the process."""
        seed = hmac.digest(self._secret, f"{scheme}\0{user}".encode(), "sha256")
        digest = _SCRAM_DIGESTS.get(scheme.upper())
        if digest is not None:
            size = hashlib.new(digest).digest_size
            salt = base64.b64encode(seed[:16]).decode()
            key1 = base64.b64encode(hashlib.new(digest, seed + b"1").digest()[:size]).decode()
            key2 = base64.b64encode(hashlib.new(digest, seed + b"2").digest()[:size]).decode()
            # Same iteration count as credentials derived from a stored plaintext
            # (schemes.credentials), or the count would tell such accounts apart
            # from unknown users.
            return f"{scram.MIN_ITERATIONS},{salt},{key1},{key2}".encode()
        size = _FAKE_SHAPES.get(scheme.upper(), 16)
        return (seed * (size // len(seed) + 1))[:size]

    # ------------------------------------------------------------------ rehash

    def needs_update(self, account: Account, credentials: object) -> bool:
        """Whether a login that proved ``credentials`` should upgrade the stored value:
        the policy allows it, the login gave a plaintext, the value is weaker than
        the policy wants, and no challenge-response mechanism depends on it."""
        if self.config.rehash == "never" or not isinstance(credentials, Password):
            return False
        parsed = self._parse(account)
        if parsed is None or not parsed[2]:
            return False
        # The account's credentials serve CRAM-MD5/DIGEST-MD5/SCRAM/APOP logins; an
        # argon2 hash could not, so upgrading would lock those clients out.
        return not (parsed[0].scheme in schemes.CREDENTIAL_SCHEMES and self.challenge_mechanisms)

    async def new_value(self, password: Password, user: str) -> str:
        """A fresh stored value of ``password`` under the policy."""
        return await self.hasher.generate(
            password.value, self.policy.scheme, user=user, policy=self.policy
        )


async def _nowhere(uses: object) -> None:
    """The use writer of a context that records no last uses."""
