"""The engine: the one place where login policy is decided.

Every front end (Dovecot sockets, HTTP, saslauthd, checkpassword, PAM, the CLI)
builds an :class:`~mailwarden.model.AuthAttempt` and calls
:meth:`Engine.authenticate`, or asks :meth:`Engine.lookup` for userdb fields.
Nothing else decides whether a login is valid.

Rules, and why:

* **Unknown user and wrong password are one outcome.** Both give
  ``Denied(CREDENTIALS)`` with no message, and an unknown (or malformed) user
  still pays for a verification of a dummy value that costs what this site's
  stored values cost (dummies.py), so neither the reply nor its timing says which
  accounts exist.
* **Status and service switches are checked only after the password was proven.**
  "Account not enabled" is useful to the owner and tells an attacker nothing they
  did not already know, because they needed the right password to see it.
* **A backend failure is never a wrong password.** Any TemporaryFailure (directory
  down, hashing pool saturated) becomes ``Unavailable``; clients retry later and
  brute-force counters are not fed by outages.
* **Master users** authenticate with their own credentials and act as the target:
  ``target*master`` (when a separator is configured) or SASL authzid ≠ authcid.
  The master's account must carry the master flag, else ``Denied(AUTHZ)``.
  An attempt with ``require_master`` (a Dovecot master passdb asking over HTTP,
  which sends only the master's name) passes only for such an account too:
  otherwise any account could impersonate every other one through that passdb.
* **Rehash on login** runs after the reply is decided, in the background, with a
  compare-and-swap write: a slow or failing rehash never delays or fails a login,
  and a password changed meanwhile is never overwritten.
* **A directory may verify passwords itself.** If it has a method
  ``verify_password(account, password: bytes) -> bool | None`` (the LDAP
  directory in rebind mode: a bind as the user's entry), the engine asks it
  first for an existing account; ``None`` means "verify the stored value here".
  Unknown users still pay for the dummy hash; an outage during the check is a
  DirectoryUnavailable, so still ``Unavailable``, never a wrong password.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol, TypeAlias

from mailwarden import schemes
from mailwarden.auth.dummies import DummyHashes
from mailwarden.auth.usernames import UsernameRules
from mailwarden.config import Config
from mailwarden.directories.base import Directory
from mailwarden.errors import SchemeError, TemporaryFailure
from mailwarden.guard.logincache import LoginCache
from mailwarden.guard.policy import Guard, unknown_subject
from mailwarden.hashing.pool import Hasher
from mailwarden.model import (
    Accepted,
    Account,
    AccountStatus,
    AuthAttempt,
    AuthOutcome,
    CredentialProof,
    Denied,
    DenyReason,
    LookupOutcome,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
    ip_in_nets,
    outcome_label,
)
from mailwarden.records import record
from mailwarden.schemes import scram
from mailwarden.schemes.base import HashPolicy, StoredHash

log = logging.getLogger("mailwarden.auth")
# Step-by-step lines of a decision the caller asked to debug (Dovecot's ``debug``
# parameter). setup_logging() lets this logger through at any configured level.
trace = logging.getLogger("mailwarden.debug")

# passdb fields that steer the engine itself and are never sent to a client
# (Dovecot calls these "hidden"; see reference §3).
HIDDEN_PASSDB_FIELDS = frozenset(
    {
        "user",
        "login_user",
        "password",
        "password_noscheme",
        "allow_nets",
        "allow_real_nets",
        "fail",
        "delay_until",
    }
)

# Mechanisms that need stored credentials (schemes.CREDENTIAL_SCHEMES) rather than a hash.
CHALLENGE_MECHANISMS = frozenset({"CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "APOP"})

#: Parsed stored passwords remembered by one engine (then forgotten all at once).
PARSED_CACHE_SIZE = 10_000

# Byte lengths of the raw credentials each challenge-response scheme yields, used to
# shape fake credentials for unknown users so the exchange looks the same.
_FAKE_SHAPES: Mapping[str, int] = {"CRAM-MD5": 32, "HMAC-MD5": 32, "DIGEST-MD5": 16, "PLAIN": 16}
_SCRAM_DIGESTS: Mapping[str, str] = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}


def policy_from_config(config: Config) -> HashPolicy:
    return config.passwords.hash_policy()


# A stored password parsed: the value, whether it is heavy to verify, whether the
# policy wants it rehashed.
_Parsed: TypeAlias = tuple[StoredHash, bool, bool]


@record
class _Names:
    """Who authenticates and who they act as, after normalisation."""

    authcid: str | None
    target: str | None  # None: not a master login
    original: str


class MetricsSink(Protocol):
    """What the engine reports to (metrics.py's Metrics, in the daemon only)."""

    def auth(self, attempt: AuthAttempt, outcome: AuthOutcome, seconds: float) -> None: ...

    def lookup(self, result: str) -> None: ...

    def connection(self, frontend: str, delta: int) -> None: ...


class Engine:
    """authenticate() / lookup() / iterate(): the only policy entry points."""

    def __init__(
        self,
        *,
        directory: Directory,
        hasher: Hasher,
        config: Config,
        guard: Guard | None = None,
        cache: LoginCache | None = None,
    ) -> None:
        self.directory = directory
        self.hasher = hasher
        self._use(config)
        self.guard = guard if guard is not None else Guard(config.guard)
        self.cache = (
            cache if cache is not None else LoginCache(config.cache, policy_tag=repr(self.policy))
        )
        self.metrics: MetricsSink | None = None
        self.decisions: collections.Counter[str] = collections.Counter()  # for `status`
        self._secret = secrets.token_bytes(32)
        self._background: set[asyncio.Task[None]] = set()
        self.dummies = DummyHashes()

    def _use(self, config: Config) -> None:
        """Everything the engine derives from its config (at start and on SIGHUP)."""
        self.config = config
        self.policy = policy_from_config(config)
        self.rules = UsernameRules.from_config(config.auth)
        self._login_by = config.directory.login_attributes
        # account.password -> (parsed, heavy): parsing and classifying the same few
        # stored values on every login costs more than the rest of a cached login.
        self._parsed: dict[str, _Parsed | None] = {}
        self._verifier = getattr(self.directory, "verify_password", None)
        # Optional: a number that changes on every write (Directory.data_version).
        self._data_version: Callable[[], int | None] | None = getattr(
            self.directory, "data_version", None
        )
        self._challenge_mechanisms = CHALLENGE_MECHANISMS & {
            m.upper() for m in config.dovecot.mechanisms
        }

    # ------------------------------------------------------------------ authenticate

    async def authenticate(self, attempt: AuthAttempt) -> AuthOutcome:
        """Decide one login. Never raises for backend trouble: that is Unavailable."""
        started = time.perf_counter()
        try:
            outcome = await self._authenticate(attempt)
        except TemporaryFailure as exc:
            outcome = Unavailable(detail=str(exc) or type(exc).__name__)
        self._log(attempt, outcome)
        if self.metrics is not None:
            self.metrics.auth(attempt, outcome, time.perf_counter() - started)
        return outcome

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: the new config's policy for every decision from now on.

        The directory, hashing pool and guard store stay (changing them needs a
        restart, app.reload says which keys); caches are flushed by the caller.
        """
        self._use(config)
        self.guard.reconfigure(config.guard)
        self.cache.reconfigure(config.cache, policy_tag=repr(self.policy))

    async def start(self, *, sample: bool = True) -> None:
        """Join the guard's flush fan-out (several processes sharing a Redis store),
        and learn in the background what the directory's stored values cost
        (``sample``; else at the first unknown name: dummies.py)."""
        await self.guard.subscribe_flush(self.cache.flush)
        self.dummies.sample_from(self.directory, self._stored)
        if sample:
            task = self.dummies.start_sampling()
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _trace(self, attempt: AuthAttempt, message: str, *args: object) -> None:
        if attempt.debug:
            trace.info("session=%s " + message, attempt.session or "-", *args)

    async def _authenticate(self, attempt: AuthAttempt) -> AuthOutcome:
        names = self._split_names(attempt)
        debug = attempt.debug  # the _trace calls are guarded: their arguments cost too
        if debug:
            self._trace(
                attempt,
                "login %r: authcid=%r target=%r",
                names.original,
                names.authcid,
                names.target,
            )
        source = self.guard.source(attempt.remote_ip)
        if source is not None and (banned := await self.guard.blocked(source)) is not None:
            # No password check runs for a banned network; the reply is a wrong password's.
            if debug:
                self._trace(
                    attempt, "source %s is banned (%s): refused unchecked", source.ip, banned
                )
            return Denied(reason=DenyReason.BLOCKED)
        account = await self._find_login(names.authcid)
        if debug:
            self._trace(attempt, "account: %s", account.uid if account is not None else "not found")
        # The guard counts and slows a name that matches no account exactly as it
        # does an account, so neither tells which names exist.
        subject = (
            account.uid if account is not None else unknown_subject(names.authcid or names.original)
        )
        if source is not None:
            delay = await self.guard.delay(source, subject)
            if delay > 0:
                if debug:
                    self._trace(attempt, "account is protected, unknown network: +%.1f s", delay)
                await asyncio.sleep(delay)
        if not await self._credentials_valid(attempt, account, names.authcid):
            if debug:
                self._trace(attempt, "credentials not valid")
            if source is not None:
                creds = attempt.credentials
                await self.guard.failed(
                    source,
                    uid=subject,
                    password=creds.value if isinstance(creds, Password) else None,
                )
            return Denied(reason=DenyReason.CREDENTIALS)
        assert account is not None  # _credentials_valid is False for a missing account
        if source is not None:
            await self.guard.succeeded(source, account.uid)
        if attempt.require_master and not account.master:
            return Denied(reason=DenyReason.AUTHZ, user=account.uid)
        if (denied := self._account_usable(account, attempt)) is not None:
            if debug:
                self._trace(attempt, "credentials valid, but refused: %s", denied.reason.value)
            return denied
        if account.allow_nets and not ip_in_nets(attempt.remote_ip, account.allow_nets):
            return Denied(reason=DenyReason.NETWORK, user=account.uid)
        acting = account
        master_user: str | None = None
        if names.target is not None:
            if not account.master:
                return Denied(reason=DenyReason.AUTHZ, user=account.uid)
            target = await self.directory.find(names.target, by=self._login_by)
            if target is None:
                return Denied(reason=DenyReason.AUTHZ, user=account.uid)
            if (denied := self._account_usable(target, attempt)) is not None:
                return denied
            acting, master_user = target, account.uid
        self._maybe_rehash(attempt, account)
        passdb = acting.passdb_fields
        fields = (
            {k: v for k, v in passdb.items() if k not in HIDDEN_PASSDB_FIELDS} if passdb else {}
        )
        if self.config.cluster.enabled:
            fields.update(self._proxy_fields(acting, attempt.service))
        return Accepted(
            user=acting.uid,
            account=acting,
            passdb_fields=fields,
            master_user=master_user,
            original_user=names.original,
        )

    async def _find_login(self, authcid: str | None) -> Account | None:
        """The account ``authcid`` logs in as; a name known to match nothing is not
        looked up again for a while (the negative cache)."""
        if authcid is None:
            return None
        # Read before the lookup: a write that lands during it voids the entry.
        version = self._data_version() if self._data_version is not None else None
        if self.cache.unknown(authcid, version):
            return None
        account = await self.directory.find(authcid, by=self._login_by)
        if account is None:
            self.cache.remember_unknown(authcid, version)
        return account

    def _proxy_fields(self, account: Account, service: str) -> dict[str, str]:
        """qmail-ldap clustering as Dovecot proxy fields (docs/classic-interfaces.md).

        Only after the login was accepted (so a disabled account bounces here and is
        never forwarded), and only for an account whose ``mail_host`` is another
        host than ``cluster.me``: Dovecot, nginx or checkpassword then forward the
        session to that host instead of serving it locally.
        """
        cluster = self.config.cluster
        host = account.mail_host
        if not cluster.enabled or not host or host.lower() == cluster.me.lower():
            return {}
        fields = {cluster.proxy: "", "host": host, "destuser": account.uid}
        port = {"pop3": cluster.pop3_port, "imap": cluster.imap_port}.get(service.lower())
        if port is not None:
            fields["port"] = str(port)
        return fields

    def _split_names(self, attempt: AuthAttempt) -> _Names:
        login = attempt.username
        target: str | None = attempt.authzid or None
        sep = self.config.auth.master_user_separator
        if target is None and sep and sep in login:
            # Dovecot splits at the *first* separator: "target*master".
            target, login = login.split(sep, 1)
        authcid = self.rules.normalise(login)
        norm_target = self.rules.normalise(target) if target is not None else None
        if target is not None and norm_target is None:
            authcid = None  # an impossible target name: fail like any bad login
        if norm_target == authcid:
            norm_target = None  # authzid == authcid (doveadm sends both) is no master login
        return _Names(authcid=authcid, target=norm_target, original=attempt.username)

    def _account_usable(self, account: Account, attempt: AuthAttempt) -> Denied | None:
        if account.status is not AccountStatus.ACTIVE:
            return Denied(
                reason=DenyReason.DISABLED,
                message=self.config.auth.disabled_message,
                user=account.uid,
            )
        if not account.service_enabled(attempt.service):
            return Denied(
                reason=DenyReason.SERVICE_DISABLED,
                message=self.config.auth.service_disabled_message,
                user=account.uid,
            )
        return None

    async def _credentials_valid(
        self, attempt: AuthAttempt, account: Account | None, authcid: str | None
    ) -> bool:
        creds = attempt.credentials
        if creds is None and attempt.mechanism.upper() == "ANONYMOUS":
            return self._anonymous_allowed(account, authcid)
        if creds is None:
            # EXTERNAL: the front end verified the client certificate; it names the user.
            cert = attempt.client_cert
            return (
                account is not None
                and cert is not None
                and cert.valid
                and cert.username is not None
                and self.rules.normalise(cert.username) == authcid
            )
        if isinstance(creds, Password):
            return await self._password_valid(creds, account, authcid)
        return await self._proof_valid(creds, account, authcid)

    def _anonymous_allowed(self, account: Account | None, authcid: str | None) -> bool:
        """SASL ANONYMOUS (RFC 4505): a login without credentials, as one fixed user.

        Dovecot lets ANONYMOUS in as ``auth_anonymous_username`` without asking a
        passdb. Here it is accepted only when all of these hold: the administrator
        listed ANONYMOUS in ``dovecot.mechanisms`` (the only place it can be offered,
        so no other front end can smuggle it in), the login names exactly the
        configured anonymous user, and that user exists as an account. The last
        rule keeps the usual checks (status, per-service switches, networks) in
        force for anonymous logins: disabling the account turns them off.
        """
        dovecot = self.config.dovecot
        offered = "ANONYMOUS" in (mech.upper() for mech in dovecot.mechanisms)
        anonymous = self.rules.normalise(dovecot.anonymous_username)
        return offered and account is not None and anonymous is not None and authcid == anonymous

    async def _password_valid(
        self, password: Password, account: Account | None, authcid: str | None
    ) -> bool:
        too_long = len(password.value) > self.config.auth.max_password_length
        verifier = self._verifier
        if verifier is not None and not too_long:
            # A directory that verifies by itself (LDAP rebind, see module docstring)
            # answers True/False; None means "check the stored value as usual". An
            # unknown user is asked about too (account None): the directory then does
            # the same work against an entry nobody has, instead of the dummy hash,
            # whose cost would differ from a bind and give the account away.
            verdict: bool | None = await verifier(account, password.value)
            if verdict is not None:
                return verdict and account is not None
        parsed = self._parse(account) if not too_long else None
        if parsed is None:
            # Unknown user, no password, unusable hash: pay the same price anyway
            # (and remember the refusal as for an account, so a repeat costs the same).
            name = account.uid if account is not None else (authcid or "")
            if self.cache.rejected(name, "", password.value):
                return False
            if schemes.is_heavy(await self._dummy_verify(password, name)):
                self.cache.remember_rejected(name, "", password.value)
            return False
        assert account is not None
        # Only expensive schemes are cached: for the others a hash is as cheap as a hit.
        stored, cached, _ = parsed
        self.dummies.observe(account.uid, account.password, stored)
        if cached and self.cache.verified(account.uid, account.password, password.value):
            return True
        if cached and self.cache.rejected(account.uid, account.password, password.value):
            return False
        try:
            ok = await self.hasher.verify(password.value, stored, user=authcid or "", heavy=cached)
        except SchemeError as exc:
            log.error("account %s: password value cannot be verified: %s", account.uid, exc)
            return False
        if cached:
            if ok:
                self.cache.remember(account.uid, account.password, password.value)
            else:
                self.cache.remember_rejected(account.uid, account.password, password.value)
        return ok

    def _stored(self, account: Account | None) -> StoredHash | None:
        """The account's parsed password, or None (no account, no password, unusable)."""
        parsed = self._parse(account)
        return parsed[0] if parsed is not None else None

    def _parse(self, account: Account | None) -> _Parsed | None:
        """The account's parsed password, whether it is heavy to verify and whether the
        policy wants it rehashed, or None (no account, no password, unusable);
        remembered per stored value (the policy is fixed until :meth:`_use` drops it)."""
        if account is None or not account.password:
            return None
        value = account.password
        try:
            return self._parsed[value]
        except KeyError:
            pass
        try:
            stored = schemes.parse(value, default_scheme=self.config.passwords.default_scheme)
        except SchemeError as exc:
            log.error("account %s has an unusable password value: %s", account.uid, exc)
            parsed = None
        else:
            weaker = self.config.passwords.rehash != "never" and schemes.needs_rehash(
                stored, self.policy
            )
            parsed = (stored, schemes.is_heavy(stored), weaker)
        if len(self._parsed) >= PARSED_CACHE_SIZE:
            self._parsed.clear()
        self._parsed[value] = parsed
        return parsed

    async def _dummy_verify(self, password: Password, name: str) -> StoredHash:
        """Verify ``password`` against a value as costly as ``name``'s would be if it
        existed (dummies.py); the verdict is discarded. Returns the value used."""
        dummy = await self.dummies.value_for(name, self.policy)
        with contextlib.suppress(SchemeError):  # a value that verifies nothing cost as much
            await self.hasher.verify(password.value, dummy)
        return dummy

    async def _proof_valid(
        self, proof: CredentialProof, account: Account | None, authcid: str | None
    ) -> bool:
        stored = self._stored(account)
        if stored is not None and authcid is not None:
            # The stored scheme itself first (its credentials are what they are), then
            # PLAIN: a SCRAM proof made against credentials derived from a plaintext
            # with a salt of that moment verifies against the plaintext.
            order = sorted(proof.schemes, key=lambda s: (s != stored.scheme, s != "PLAIN"))
            for scheme in order:
                creds = schemes.credentials(stored, scheme, user=authcid)
                if creds is not None:
                    return await self._check_proof(proof, scheme, creds)
        # No usable credentials: check against fake ones so the work done is the same.
        scheme = proof.schemes[0] if proof.schemes else "PLAIN"
        await self._check_proof(proof, scheme, self._fake_credentials(authcid or "", scheme))
        return False

    async def _check_proof(self, proof: CredentialProof, scheme: str, credentials: bytes) -> bool:
        # A proof checked against a plaintext password may run PBKDF2 (SCRAM): keep
        # it off the event loop, under the hasher's queue limit like any hash.
        return await self.hasher.run(lambda: proof.check(scheme, credentials))

    # ------------------------------------------------------------------ credentials

    async def credentials(self, username: str, scheme: str) -> bytes | Unavailable:
        """Stored credentials of ``username`` in ``scheme``, for challenge-response SASL.

        Unknown users and accounts whose stored scheme cannot yield ``scheme`` get
        deterministic fake credentials: the exchange proceeds identically and
        fails at the end, so it cannot be used to enumerate accounts. Policy
        (status, services, networks) is applied by authenticate() afterwards.
        """
        authcid = self.rules.normalise(username)
        try:
            account = await self.directory.find(authcid, by=self._login_by) if authcid else None
        except TemporaryFailure as exc:
            return Unavailable(detail=str(exc))
        stored = self._stored(account)
        if stored is not None and authcid is not None:
            try:
                creds = schemes.credentials(stored, scheme, user=authcid)
            except SchemeError:
                creds = None
            if creds is not None:
                return creds
        return self._fake_credentials(authcid or username, scheme)

    def _fake_credentials(self, user: str, scheme: str) -> bytes:
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

    # ------------------------------------------------------------------ userdb

    async def lookup(self, user: str, *, service: str = "") -> LookupOutcome:
        """Userdb fields for ``user`` (home, mail, uid, gid, quota_rule, extra fields).

        Disabled accounts are still found (mail keeps being delivered to them);
        deleted ones are not.
        """
        found = await self._find_existing(user)
        if self.metrics is not None:
            kind = {NotFound: "not_found", Unavailable: "unavailable"}.get(type(found), "found")
            self.metrics.lookup(kind)
        if not isinstance(found, Account):
            return found
        return UserRecord(user=found.uid, account=found, fields=userdb_fields(found))

    async def passdb_lookup(self, user: str) -> LookupOutcome:
        """Passdb fields without the password (the master socket's PASS command)."""
        found = await self._find_existing(user)
        if not isinstance(found, Account):
            return found
        fields = {k: v for k, v in found.passdb_fields.items() if k not in HIDDEN_PASSDB_FIELDS}
        return UserRecord(user=found.uid, account=found, fields=fields)

    async def _find_existing(self, user: str) -> Account | NotFound | Unavailable:
        """The account a lookup names, unless it is deleted; never raises for outages."""
        name = self.rules.normalise(user)
        if name is None:
            return NotFound()
        try:
            account = await self.directory.find(name, by=self._login_by)
        except TemporaryFailure as exc:
            return Unavailable(detail=str(exc))
        if account is None or account.status is AccountStatus.DELETED:
            return NotFound()
        return account

    async def iterate(self) -> AsyncIterator[str]:
        """Every login name (uid), for ``doveadm user '*'`` and list endpoints."""
        async for uid in self.directory.iterate():
            yield uid

    async def flush_cache(self, users: list[str] | None = None) -> int:
        """Forget cached logins of ``users`` (uids or login names; None: all), in this
        process and, with a shared guard store, in every process. Returns how many
        entries this process dropped."""
        names = None
        if users is not None:
            names = list(users)
            for user in users:
                # The cache is keyed by uid: find the uid an address belongs to.
                authcid = self.rules.normalise(user)
                try:
                    account = await self.directory.find(authcid) if authcid else None
                except TemporaryFailure:
                    account = None
                if account is not None:
                    names.append(account.uid)
                if authcid:
                    names.append(authcid)
        dropped = self.cache.flush(names)
        if self.guard.shared:
            await self.guard.publish_flush(names)
        return dropped

    # ------------------------------------------------------------------ rehash

    def _maybe_rehash(self, attempt: AuthAttempt, account: Account) -> None:
        if self.config.passwords.rehash == "never":
            return
        if not isinstance(attempt.credentials, Password):
            return
        parsed = self._parse(account)
        if parsed is None or not parsed[2]:
            return
        stored = parsed[0]
        if stored.scheme in schemes.CREDENTIAL_SCHEMES and self._challenge_mechanisms:
            # The account's credentials serve CRAM-MD5/DIGEST-MD5/SCRAM/APOP logins;
            # an argon2 hash could not, so upgrading would lock those clients out.
            return
        task = asyncio.get_running_loop().create_task(self._rehash(account, attempt.credentials))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _rehash(self, account: Account, password: Password) -> None:
        try:
            new = await self.hasher.generate(
                password.value, self.policy.scheme, user=account.uid, policy=self.policy
            )
            wrote = await self.directory.set_password(account.uid, new, expected=account.password)
        except Exception:  # a failed upgrade must never affect logins; log and move on
            log.exception("rehash of %s failed; the old hash stays", account.uid)
            return
        if wrote:
            log.info("rehashed password of %s to %s", account.uid, self.policy.scheme)

    async def drain(self) -> None:
        """Wait for background work (rehashes) to finish; used at shutdown and in tests."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # ------------------------------------------------------------------ logging

    def _log(self, attempt: AuthAttempt, outcome: AuthOutcome) -> None:
        match outcome:
            case Accepted():
                result, detail = (
                    "accepted",
                    (f"master={outcome.master_user}" if outcome.master_user else ""),
                )
            case Denied():
                result, detail = "denied", outcome.reason.value
            case Unavailable():
                result, detail = "unavailable", outcome.detail
        self.decisions[result] += 1
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "auth frontend=%s service=%s mech=%s user=%r rip=%s session=%s result=%s %s",
            attempt.frontend,
            attempt.service,
            attempt.mechanism,
            attempt.username,
            attempt.remote_ip or "-",
            attempt.session or "-",
            result,
            detail,
            extra={
                "decision": {
                    "event": "auth",
                    "request_id": attempt.session,
                    "frontend": attempt.frontend,
                    "service": attempt.service,
                    "mechanism": attempt.mechanism,
                    "user": attempt.username,
                    "remote_ip": attempt.remote_ip,
                    "result": outcome_label(outcome),
                    "reason": detail or None,
                }
            },
        )


def userdb_fields(account: Account) -> dict[str, str]:
    """The Dovecot userdb fields of an account, in a stable order."""
    fields: dict[str, str] = {}
    if account.home:
        fields["home"] = account.home
    if account.mail_location:
        fields["mail"] = account.mail_location
    if account.uid_number is not None:
        fields["uid"] = str(account.uid_number)
    if account.gid_number is not None:
        fields["gid"] = str(account.gid_number)
    rule = []
    if account.quota_bytes is not None:
        rule.append(f"bytes={account.quota_bytes}")
    if account.quota_messages is not None:
        rule.append(f"messages={account.quota_messages}")
    if rule:
        fields["quota_rule"] = "*:" + ":".join(rule)
    fields.update(account.userdb_fields)
    return fields
