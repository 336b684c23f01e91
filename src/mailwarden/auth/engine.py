"""The engine: the one place where login policy is decided.

Every front end (Dovecot sockets, HTTP, saslauthd, checkpassword, PAM, the CLI)
builds an :class:`~mailwarden.model.AuthAttempt` and calls
:meth:`Engine.authenticate`, or asks :meth:`Engine.lookup` for userdb fields,
:meth:`Engine.account_state` whether an account may use a service now (PAM's
``account`` phase, the web session), and :meth:`Engine.forget` to drop what is
remembered about a user. Nothing else decides whether a login is valid.

The engine orchestrates; the rules live beside it: :mod:`~mailwarden.auth.passwords`
(verify, app passwords, dummy verify, challenge-response credentials, rehash),
:mod:`~mailwarden.auth.bearer` (OAuth2 bearer tokens) and :mod:`~mailwarden.auth.access`
(the access policy: status, service switches, networks, master users, anonymous,
nodelay, passdb and proxy fields). The engine reads the directory **once** per login,
and its outcome carries everything the front ends answer with, so none reads it again.

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
* **A directory may verify passwords itself.** app.py hands such a directory (the
  LDAP directory in rebind mode: a bind as the user's entry) to the engine as its
  :class:`~mailwarden.directories.base.PasswordChecker`; it is asked first, also
  for an unknown name. Unknown users pay the same as known ones; an outage during
  the check is a DirectoryUnavailable, so still ``Unavailable``, never a wrong password.
* **The engine takes no front-end configuration.** Which challenge-response
  mechanisms are offered (they keep credential-capable values from being
  rehashed) and who the anonymous user is come in as arguments; whether a front
  end offers ANONYMOUS is said per attempt (``anonymous_offered``).
* **The login history** (history/) is handed each decision with the uid resolved
  inside it, which the outcome does not carry; history/base.py says what is kept.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from typing import Any, Protocol

from mailwarden.auth.access import AccessPolicy, Names, visible_passdb_fields
from mailwarden.auth.bearer import BearerCheck
from mailwarden.auth.decisionlog import log_decision
from mailwarden.auth.dummies import DummyHashes
from mailwarden.auth.passwords import PasswordContext
from mailwarden.config import Config
from mailwarden.directories.base import Directory, PasswordChecker, QueryContext
from mailwarden.errors import TemporaryFailure, WriteRefused
from mailwarden.guard.logincache import LoginCache
from mailwarden.guard.policy import Guard, unknown_subject
from mailwarden.hashing.pool import Hasher
from mailwarden.history.base import Trail
from mailwarden.history.recorder import HistoryRecorder
from mailwarden.model import (
    ACCOUNT_PREFIX,
    Accepted,
    Account,
    AccountStatus,
    AuthAttempt,
    AuthOutcome,
    BearerToken,
    CredentialKind,
    CredentialUsed,
    Denied,
    DenyReason,
    LookupOutcome,
    NotFound,
    Password,
    Prefetched,
    StoredCredentials,
    Unavailable,
    UserRecord,
    userdb_fields,
)
from mailwarden.oauth2.claims import TokenVerifier

__all__ = ["Engine", "MetricsSink", "userdb_fields"]

log = logging.getLogger("mailwarden.auth")
# Step-by-step lines of a decision the caller asked to debug (Dovecot's ``debug``
# parameter). setup_logging() lets this logger through at any configured level.
trace = logging.getLogger("mailwarden.debug")


#: The credentials that name no app password, made once (a login allocates none).
_USED = {kind: CredentialUsed(kind=kind) for kind in CredentialKind}


class MetricsSink(Protocol):
    """What the engine reports to (metrics.py's Metrics, in the daemon only)."""

    def auth(self, attempt: AuthAttempt, outcome: AuthOutcome, seconds: float) -> None: ...

    def lookup(self, result: str) -> None: ...

    def connection(self, frontend: str, delta: int) -> None: ...


class Engine:
    """authenticate() / lookup() / account_state() / forget() / iterate(): the only
    policy entry points."""

    def __init__(
        self,
        *,
        directory: Directory,
        hasher: Hasher,
        config: Config,
        guard: Guard | None = None,
        cache: LoginCache | None = None,
        metrics: MetricsSink | None = None,
        password_checker: PasswordChecker | None = None,
        mechanisms: Iterable[str] = (),
        anonymous_user: str | None = None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        """``password_checker``: a directory that verifies passwords itself (LDAP
        rebind); ``tokens``: the ``[oauth2]`` verifier (auth/bearer.py); ``mechanisms``:
        the SASL mechanisms the front ends offer (ANONYMOUS among them lets the
        anonymous user in; challenge-response ones keep their accounts' values from
        being rehashed); ``anonymous_user``: who SASL ANONYMOUS logs in as."""
        self.directory = directory
        self.hasher = hasher
        self.metrics = metrics
        self._mechanisms = frozenset(m.upper() for m in mechanisms)
        self._anonymous_user = anonymous_user
        policy = config.passwords.hash_policy()
        self.guard = guard if guard is not None else Guard(config.guard)
        self.cache = (
            cache if cache is not None else LoginCache(config.cache, policy_tag=repr(policy))
        )
        self.passwords = PasswordContext(
            hasher=hasher,
            cache=self.cache,
            config=config.passwords,
            max_length=config.auth.max_password_length,
            checker=password_checker,
            challenge_mechanisms=self._mechanisms,
            record_uses=directory.record_app_password_uses,
        )
        self.bearer = BearerCheck(tokens, self.passwords)
        self._use(config)
        self.decisions: collections.Counter[str] = collections.Counter()  # for `status`
        self._background: set[asyncio.Task[None]] = set()
        #: The login history's recorder (history/opening.py; None: not kept).
        self.history: HistoryRecorder | None = None

    def _use(self, config: Config) -> None:
        """Everything the engine derives from its config (at start and on SIGHUP)."""
        self.config = config
        self.passwords.reconfigure(
            config.passwords,
            max_length=config.auth.max_password_length,
            challenge_mechanisms=self._mechanisms,
        )
        self.policy = self.passwords.policy
        self.access = AccessPolicy(
            config.auth,
            config.cluster,
            anonymous_user=self._anonymous_user,
            anonymous_offered="ANONYMOUS" in self._mechanisms,
        )
        self.rules = self.access.rules
        self._login_by = config.directory.login_attributes

    @property
    def dummies(self) -> DummyHashes:
        """What an unknown name's verification costs (the password context's)."""
        return self.passwords.dummies

    @property
    def anonymous_user(self) -> str | None:
        """Who SASL ANONYMOUS logs in as (None: nobody)."""
        return self._anonymous_user

    # ------------------------------------------------------------------ authenticate

    async def authenticate(self, attempt: AuthAttempt) -> AuthOutcome:
        """Decide one login. Never raises for backend trouble: that is Unavailable."""
        started = time.perf_counter()
        history = self.history
        trail = Trail() if history is not None else None
        try:
            outcome = await self._authenticate(attempt, trail)
        except TemporaryFailure as exc:
            outcome = Unavailable(detail=str(exc) or type(exc).__name__)
        self.decisions[log_decision(attempt, outcome)] += 1
        if trail is not None and history is not None:
            history.note(attempt, outcome, trail)  # queued: never waits, never raises
        if self.metrics is not None:
            self.metrics.auth(attempt, outcome, time.perf_counter() - started)
        return outcome

    def reconfigure(
        self,
        config: Config,
        *,
        mechanisms: Iterable[str] | None = None,
        anonymous_user: str | None = None,
    ) -> None:
        """SIGHUP: the new config's policy for every decision from now on (and the
        front ends' new mechanisms and anonymous user, when ``mechanisms`` is given).

        The directory, hashing pool and guard store stay (changing them needs a
        restart, app.reload says which keys); caches are flushed by the caller.
        """
        if mechanisms is not None:
            self._mechanisms = frozenset(m.upper() for m in mechanisms)
            self._anonymous_user = anonymous_user
        self._use(config)
        if self.history is not None:
            self.history.configure(config.history)
        self.guard.reconfigure(config.guard)
        self.cache.reconfigure(config.cache, policy_tag=repr(self.policy))

    async def start(self, *, sample: bool = True) -> None:
        """Join the guard's flush fan-out (several processes sharing a Redis store),
        and learn in the background what the directory's stored values cost
        (``sample``; else at the first unknown name: dummies.py)."""
        await self.guard.subscribe_flush(self.cache.flush)
        dummies = self.passwords.dummies
        dummies.sample_from(self.directory, self.passwords.stored)
        if sample:
            task = dummies.start_sampling()
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _trace(self, attempt: AuthAttempt, message: str, *args: object) -> None:
        if attempt.debug:
            trace.info("session=%s " + message, attempt.session or "-", *args)

    async def _authenticate(self, attempt: AuthAttempt, trail: Trail | None) -> AuthOutcome:
        """The decision; ``trail`` (when the history is kept) learns the account's uid
        and the credential proven, which the outcome does not always say."""
        access = self.access
        names = access.split_names(attempt)
        if trail is not None:
            trail.login = names.authcid
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
        prefetched = attempt.prefetched
        if prefetched is not None and prefetched.login == names.authcid:
            account = prefetched.account  # read when the exchange asked for credentials
        else:
            account = await self._find_login(names.authcid, QueryContext.of(attempt))
        if debug:
            self._trace(attempt, "account: %s", account.uid if account is not None else "not found")
        if trail is not None and account is not None:
            trail.uid = account.uid
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
        used = await self._credentials_valid(attempt, account, names.authcid)
        if used is None:
            if debug:
                self._trace(attempt, "credentials not valid")
            if source is not None:
                creds = attempt.credentials
                if isinstance(creds, BearerToken):  # counted as a wrong password would be
                    creds = creds.as_password()
                await self.guard.failed(
                    source,
                    uid=subject,
                    password=creds.value if isinstance(creds, Password) else None,
                )
            return Denied(reason=DenyReason.CREDENTIALS)
        assert account is not None  # _credentials_valid is None for a missing account
        if trail is not None:
            trail.credential = used
        if source is not None:
            await self.guard.succeeded(source, account.uid)
        return await self._authorize(attempt, account, names)

    async def _authorize(self, attempt: AuthAttempt, account: Account, names: Names) -> AuthOutcome:
        """The access policy for ``account``, whose credentials were just proven."""
        access = self.access
        if attempt.require_master and not account.master:
            return access.authz_refusal(account)
        if (denied := access.refusal(account, attempt.service, attempt.switches)) is not None:
            if attempt.debug:
                self._trace(attempt, "credentials valid, but refused: %s", denied.reason.value)
            return denied
        if (denied := access.network_refusal(account, attempt.remote_ip)) is not None:
            return denied
        acting = account
        master_user: str | None = None
        if names.target is not None:
            if not account.master:
                return access.authz_refusal(account)
            target = await self.directory.find(
                names.target, by=self._login_by, context=QueryContext.of(attempt)
            )
            if target is None:
                return access.authz_refusal(account)
            if (denied := access.refusal(target, attempt.service, attempt.switches)) is not None:
                return denied
            acting, master_user = target, account.uid
        credentials = attempt.credentials
        if isinstance(credentials, Password) and self.passwords.needs_update(account, credentials):
            self._background_task(self._rehash(account, credentials))
        return Accepted(
            user=acting.uid,
            account=acting,
            passdb_fields=access.passdb_fields(acting, attempt.service),
            master_user=master_user,
            original_user=names.original,
            anonymous=access.is_anonymous(acting.uid),
        )

    async def _find_login(
        self, authcid: str | None, context: QueryContext | None = None
    ) -> Account | None:
        """The account ``authcid`` logs in as; a name known to match nothing is not
        looked up again for a while (the negative cache)."""
        if authcid is None:
            return None
        # Read before the lookup: a write that lands during it voids the entry.
        version = self.directory.data_version()
        if self.cache.unknown(authcid, version):
            return None
        account = await self.directory.find(authcid, by=self._login_by, context=context)
        if account is None:
            self.cache.remember_unknown(authcid, version)
        return account

    async def _credentials_valid(
        self, attempt: AuthAttempt, account: Account | None, authcid: str | None
    ) -> CredentialUsed | None:
        """The credential that proved ``account`` (None: not proven)."""
        creds = attempt.credentials
        if creds is None and attempt.mechanism.upper() == "ANONYMOUS":
            ok = self.access.anonymous_allowed(account, authcid)
            return _USED[CredentialKind.NONE] if ok else None
        if creds is None:
            # EXTERNAL: the front end verified the client certificate; it names the user.
            cert = attempt.client_cert
            ok = (
                account is not None
                and cert is not None
                and cert.valid
                and cert.username is not None
                and self.rules.normalise(cert.username) == authcid
            )
            return _USED[CredentialKind.CERTIFICATE] if ok else None
        if isinstance(creds, Password):
            return await self.passwords.verify_credential(
                creds, account, authcid or "", service=attempt.service, remote_ip=attempt.remote_ip
            )
        if isinstance(creds, BearerToken):
            service, remote_ip = attempt.service, attempt.remote_ip
            ok = await self.bearer.valid(
                creds, account, authcid, self.rules, service=service, remote_ip=remote_ip
            )
            return _USED[CredentialKind.TOKEN] if ok else None
        ok = await self.passwords.verify_proof(creds, account, authcid, service=attempt.service)
        return _USED[CredentialKind.PASSWORD] if ok else None

    # ------------------------------------------------------------------ credentials

    async def stored_credentials(
        self, username: str, scheme: str
    ) -> StoredCredentials | Unavailable:
        """Stored credentials of ``username`` in ``scheme``, for challenge-response SASL,
        and the account they came from: the front end hands ``found`` back in
        :attr:`AuthAttempt.prefetched`, so the decision reads the directory no second time.

        Unknown users and accounts whose stored scheme cannot yield ``scheme`` get
        deterministic fake credentials: the exchange proceeds identically and
        fails at the end, so it cannot be used to enumerate accounts. Policy
        (status, services, networks) is applied by authenticate() afterwards.
        """
        authcid = self.rules.normalise(username)
        try:
            account = await self._find_login(authcid)
        except TemporaryFailure as exc:
            return Unavailable(detail=str(exc))
        value = self.passwords.credentials(account, authcid or username, scheme)
        found = Prefetched(login=authcid, account=account) if authcid is not None else None
        return StoredCredentials(value=value, found=found)

    async def credentials(self, username: str, scheme: str) -> bytes | Unavailable:
        """:meth:`stored_credentials` without the account (for callers that keep none)."""
        stored = await self.stored_credentials(username, scheme)
        return stored if isinstance(stored, Unavailable) else stored.value

    # ------------------------------------------------------------------ userdb

    async def lookup(self, user: str, *, service: str = "") -> LookupOutcome:
        """Userdb fields for ``user`` (home, mail, uid, gid, quota_rule, extra fields).

        Disabled accounts are still found (mail keeps being delivered to them);
        deleted ones are not.
        """
        found = await self._find_existing(user, context=QueryContext(service=service, userdb=True))
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
        return UserRecord(
            user=found.uid, account=found, fields=visible_passdb_fields(found.passdb_fields)
        )

    async def account_state(
        self, user: str, service: str, *, switches: tuple[str, ...] = (), uid: bool = False
    ) -> UserRecord | Denied | NotFound | Unavailable:
        """Whether ``user``'s account may use ``service`` now, with no credentials:
        PAM's ``account`` phase, and a web session that was opened earlier.

        One directory read and the access policy's status and switch rules
        (``switches``: pam_mapi's OR-list, as on :class:`AuthAttempt`): the account
        and its userdb fields when it may, ``Denied(DISABLED | SERVICE_DISABLED)``
        with the configured message when it may not, ``NotFound`` (also a deleted
        account), ``Unavailable`` when the directory cannot answer. Networks and
        master users are not checked here: they concern a login, not an account.
        ``uid``: ``user`` is an account's uid as an earlier decision returned it (a web
        session), looked up as such whatever ``directory.login_attributes`` says.
        """
        found = await self._find_existing(user, uid=uid, context=QueryContext(service=service))
        if not isinstance(found, Account):
            return found
        denied = self.access.refusal(found, service, switches)
        if denied is not None:
            return denied
        return UserRecord(user=found.uid, account=found, fields=userdb_fields(found))

    async def _find_existing(
        self, user: str, *, uid: bool = False, context: QueryContext | None = None
    ) -> Account | NotFound | Unavailable:
        """The account a lookup names (``uid``: the account of that uid), unless it is
        deleted; never raises for outages."""
        name = user if uid else self.rules.normalise(user)
        if name is None:
            return NotFound()
        try:
            account = await self.directory.find(
                name, by=("uid",) if uid else self._login_by, context=context
            )
        except TemporaryFailure as exc:
            return Unavailable(detail=str(exc))
        if account is None or account.status is AccountStatus.DELETED:
            return NotFound()
        return account

    async def iterate(self) -> AsyncIterator[str]:
        """Every login name (uid), for ``doveadm user '*'`` and list endpoints."""
        async for uid in self.directory.iterate():
            yield uid

    # ------------------------------------------------------------------ forgetting

    async def forget(self, users: list[str] | None) -> int:
        """Forget what is remembered about ``users`` (uids or login names; None:
        everyone): the one entry point of every explicit flush (Dovecot's
        ``CACHE-FLUSH``, ``POST /api/v1/cache/flush``, the control socket's
        ``cache.flush``, so ``mailwarden cache flush``).

        The rule (docs/guard.md, "Administration"): the named users' cached logins
        are dropped, in this process and, with a shared guard store, in every
        process; and each named account's brute-force protection is lifted, because
        a flush is how an administrator helps a user who is locked out. Forgetting
        everyone drops every cached login and lifts no protection (``mailwarden
        guard unblock --all`` does that). Returns how many cache entries this
        process dropped.
        """
        if users is None:
            return await self.flush_cache(None)
        names = await self._cache_names(users)
        dropped = await self._flush_names(names)
        for name in dict.fromkeys(n.lower() for n in names):
            await self.guard.unblock(ACCOUNT_PREFIX + name)
        return dropped

    async def flush_cache(self, users: list[str] | None = None) -> int:
        """Forget cached logins of ``users`` (uids or login names; None: all), in this
        process and, with a shared guard store, in every process; protection stays
        (account edits call this; explicit flushes call :meth:`forget`). Returns how
        many entries this process dropped."""
        names = await self._cache_names(users) if users is not None else None
        return await self._flush_names(names)

    def directory_changed(self, names: Sequence[str] | None) -> int:
        """A shared directory's change feed (base.ChangeFeed, subscribed by app.py):
        another node or tool wrote the accounts with these lower-cased logins (None:
        anything may have changed). Drops their cached logins in this process only:
        every process hears the feed itself, so nothing is published, and no
        protection is lifted (a write is not an administrator's flush)."""
        return self.cache.flush(None if names is None else list(names))

    async def _cache_names(self, users: list[str]) -> list[str]:
        """``users`` and, for each that names an account, its uid (the key of the
        cache and of the guard's protection)."""
        names = list(users)
        for user in users:
            authcid = self.rules.normalise(user)
            try:
                account = await self.directory.find(authcid) if authcid else None
            except TemporaryFailure:
                account = None
            if account is not None:
                names.append(account.uid)
            if authcid:
                names.append(authcid)
        return names

    async def _flush_names(self, names: list[str] | None) -> int:
        dropped = self.cache.flush(names)
        if self.guard.shared:
            await self.guard.publish_flush(names)
        return dropped

    # ------------------------------------------------------------------ rehash

    def _background_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _rehash(self, account: Account, password: Password) -> None:
        try:
            new = await self.passwords.new_value(password, account.uid)
            wrote = await self.directory.set_password(account.uid, new, expected=account.password)
        except WriteRefused:
            # The directory stores no passwords (SQL in Dovecot-style mode without
            # update_query, said once at start): the old hash stays, quietly.
            return
        except Exception:  # a failed upgrade must never affect logins; log and move on
            log.exception("rehash of %s failed; the old hash stays", account.uid)
            return
        if wrote:
            log.info("rehashed password of %s to %s", account.uid, self.policy.scheme)

    async def drain(self) -> None:
        """Wait for background work (rehashes, last uses of app passwords, the login
        history's queue) to finish; used at shutdown and in tests."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self.passwords.app_password_uses.flush()
        if self.history is not None:
            await self.history.flush()

    async def history_uid(self, login: str) -> str | None:
        """The uid of the account ``login`` (a normalised login name) logs in as, or
        None: how the history finds the account of a blocked login, later."""
        account = await self._find_login(login)
        return account.uid if account is not None else None
