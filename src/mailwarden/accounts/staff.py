"""Administrators, API tokens and second factors: who may administer, and the proof.

What belongs here: every change to those records (each recorded in the audit log
by the same one call as account changes, :meth:`AuditLog.record`), checking an
administrator's sign-in (name, password, TOTP code), recognising an API token or
the bootstrap token, and the TOTP state of administrators and account holders. The
records live in the state store (state/); what a role may do is auth/roles.py's;
how a code is judged is accounts/totp.py's.

* **Administrators** have a name, their own password (ARGON2ID through the
  scheme registry, never the directory's scheme: these are the keys to everything)
  and a role, ``admin`` or ``helpdesk``. An unknown name still pays for a dummy
  verification, so the answer's time does not say which names exist.
* **API tokens** are issued secrets (auth/tokens.py, ``mwt_...``): shown once, kept
  as their digest, with a scope (a grant), an optional expiry, and revocable by
  name; an expired token is refused like an unknown one.
* **The guard counts administrators' sign-ins** exactly as it counts mail logins
  (guard/policy.py, the same calls the engine makes): a banned network is refused
  before any password (or the bootstrap token) is looked at, a wrong password
  counts per network rule and per name (``admin:<name>``; a name that is no
  administrator under its :func:`~mailwarden.guard.policy.unknown_subject`, so both
  take the same steps), and a protected name is slowed from unknown networks. The
  answer to a banned network is the wrong password's (:attr:`SignIn.INVALID`).
* **The bootstrap token** (``http.admin_token``) is the only credential a new site
  has. It is accepted only while no administrator exists, and then only to create
  the first one (:meth:`Staff.add_admin` with the bootstrap principal; the store
  decides "no administrator yet" and the insert in one step). Every use is
  written to the audit log; once an administrator exists it opens nothing.
* **Second factors** are keyed ``admin:<name>`` or ``user:<uid>``. Every check is
  a compare-and-swap of the stored state (accounts/totp.py decides, the store
  swaps only over the version read), so a code accepted on one node is refused on
  every other one, and wrong codes are counted for all of them together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailwarden import schemes
from mailwarden.accounts import totp
from mailwarden.accounts.audit import Actor, AuditLog
from mailwarden.auth import tokens
from mailwarden.auth.roles import ADMIN_ROLES, TOKEN_SCOPES, Action, Grant, grant_of, permits
from mailwarden.config import HttpConfig
from mailwarden.errors import (
    AccountNotFound,
    InvalidAccount,
    NotPermitted,
    SchemeError,
    StateUnavailable,
)
from mailwarden.guard.policy import Guard, unknown_subject
from mailwarden.hashing.pool import Hasher
from mailwarden.model import HashPolicy
from mailwarden.state.base import Administrator, ApiToken, SecondFactor, StateStore

log = logging.getLogger("mailwarden.staff")

#: Administrator and token names: short, printable, no spaces (they appear in logs).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12
_POLICY = HashPolicy()  # ARGON2ID at the library's default cost
_SWAP_ATTEMPTS = 5

ADMIN_OWNER = "admin:"
USER_OWNER = "user:"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is asking: an administrator, an API token, the bootstrap token or the
    command line (``kind``), its ``name``, and what it may do (``grant``; None for
    the bootstrap token, which may only create the first administrator)."""

    kind: str  # "admin" | "token" | "bootstrap" | "cli"
    name: str
    grant: Grant | None

    @property
    def label(self) -> str:
        return "bootstrap token" if self.kind == "bootstrap" else f"{self.kind}:{self.name}"

    def actor(self, source: str) -> Actor:
        return Actor(name=self.label, source=source)

    def may(self, action: Action) -> bool:
        return self.grant is not None and permits(self.grant, action)

    def require(self, action: Action) -> None:
        """The one role check of the web page and the admin API (auth/roles.py decides)."""
        if self.grant is None:
            raise NotPermitted("the bootstrap token may only create the first administrator")
        if not permits(self.grant, action):
            raise NotPermitted(f"{self.label} ({self.grant}) may not {action.value}")


def cli_principal(actor: Actor) -> Principal:
    """The command line: whoever can read the config and the state file is root here."""
    return Principal(kind="cli", name=actor.name.removeprefix("cli:"), grant=Grant.ADMIN)


def audit_target(owner: str) -> str:
    """How a factor's owner appears in the audit log: an account holder by uid (so
    ``audit --user UID`` finds it), an administrator as ``admin:<name>``."""
    return owner.removeprefix(USER_OWNER)


class SignIn(enum.Enum):
    """What an administrator's sign-in proved (:meth:`Staff.sign_in`)."""

    OK = "ok"  # password and code right: a full session
    ENROL = "enrol"  # password right, no second factor yet: enrolment only
    NEED_CODE = "need-code"  # password right, the code missing or wrong
    LIMITED = "limited"  # password right, too many wrong codes lately
    INVALID = "invalid"  # unknown name, wrong password, or a banned network
    BOOTSTRAP = "bootstrap"  # the bootstrap name and token, while no administrator exists


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrolment:
    """A new TOTP secret as shown once: the secret itself, its URI and QR code."""

    secret: str
    uri: str
    svg: str

    def __repr__(self) -> str:
        return "Enrolment(<hidden>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewToken:
    """An API token just issued: ``value`` is shown once and never stored."""

    token: ApiToken
    value: str

    def __repr__(self) -> str:
        return f"NewToken(name={self.token.name!r}, value=<hidden>)"


def _check_name(name: str, what: str) -> None:
    if not NAME.fullmatch(name):
        raise InvalidAccount(f"{what} name: letters, digits and ._@- only, at most 64")


def _check_password(password: bytes) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidAccount(f"an administrator's password needs {MIN_PASSWORD} characters or more")
    if b"\x00" in password:
        raise InvalidAccount("the password contains a NUL byte")


def _grant(value: str, allowed: tuple[Grant, ...], what: str) -> Grant:
    grant = grant_of(value)
    if grant is None or grant not in allowed:
        raise InvalidAccount(f"{what}: one of {', '.join(g.value for g in allowed)}")
    return grant


class Staff:
    """Administrators, API tokens and second factors (see the module docstring)."""

    def __init__(
        self,
        store: StateStore,
        hasher: Hasher,
        *,
        bootstrap_token: str = "",
        bootstrap_name: str = "",
        issuer: str = "mailwarden",
        guard: Guard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.bootstrap_token = bootstrap_token
        self.bootstrap_name = bootstrap_name
        self.guard = guard
        self.issuer = issuer
        self.clock = clock
        # Through a lambda: tests replace ``clock`` later.
        self.audit = AuditLog(store, clock=lambda: self.clock())  # noqa: PLW0108

    @classmethod
    def for_site(
        cls, store: StateStore, hasher: Hasher, http: HttpConfig, *, guard: Guard | None = None
    ) -> Staff:
        """Staff with the site's bootstrap name and token and TOTP issuer name
        (``[http]``), counting sign-ins in ``guard`` (the engine's)."""
        return cls(
            store,
            hasher,
            bootstrap_token=http.admin_token,
            bootstrap_name=http.admin_username,
            issuer=http.totp_issuer,
            guard=guard,
        )

    # ------------------------------------------------------------------ who is asking

    async def bootstrap_open(self) -> bool:
        """Whether the bootstrap token opens anything: set, and no administrator yet."""
        return bool(self.bootstrap_token) and not await self.store.admins()

    async def bootstrap(self, presented: str, *, source: str) -> Principal | None:
        """The bootstrap principal if ``presented`` is the bootstrap token and no
        administrator exists yet (every attempt with the right token is audited)."""
        if not self.bootstrap_token or not hmac.compare_digest(
            presented.encode(), self.bootstrap_token.encode()
        ):
            return None
        principal = Principal(kind="bootstrap", name="bootstrap", grant=None)
        is_open = not await self.store.admins()
        action = "bootstrap.use" if is_open else "bootstrap.refused"
        await self.audit.record(action, "-", actor=principal.actor(source))
        return principal if is_open else None

    async def bearer(self, header: str | None, *, source: str) -> Principal | None:
        """The principal of ``Authorization: Bearer ...``: a named API token (unexpired),
        or the bootstrap token while it is open; None for anything else."""
        if header is None:
            return None
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return None
        recognised = tokens.recognise(tokens.TokenKind.API_TOKEN, value)
        if recognised is None:
            return await self.bootstrap(value, source=source)
        found = await self.store.token(tokens.digest(tokens.TokenKind.API_TOKEN, recognised))
        if found is None or (found.expires is not None and found.expires <= self.clock()):
            return None
        grant = grant_of(found.scope)
        return Principal(kind="token", name=found.name, grant=grant) if grant else None

    async def admin_principal(self, name: str) -> tuple[Principal, Administrator] | None:
        """An existing administrator as a principal, with the record (sessions check
        their binding tag against its password hash and role)."""
        admin = await self.store.admin(name)
        grant = grant_of(admin.role) if admin else None
        if admin is None or grant is None:
            return None
        return Principal(kind="admin", name=admin.name, grant=grant), admin

    async def sign_in(
        self, name: str, password: bytes, code: str, *, remote_ip: str | None = None
    ) -> SignIn:
        """An administrator's sign-in from ``remote_ip``: the guard (module docstring),
        the bootstrap token (on the bootstrap name), the password (argon2id), then the
        TOTP or a recovery code. Wrong codes count towards the rate limit; the
        password alone never opens more than the enrolment of a first factor."""
        guard = self.guard
        source = guard.source(remote_ip) if guard is not None else None
        if guard is not None and source is not None:
            banned = await guard.blocked(source)
            if banned is not None:
                log.info(
                    "administrator sign-in from %s: %s is banned, refused unchecked",
                    source.ip,
                    banned,
                )
                return SignIn.INVALID
        if self.bootstrap_name and hmac.compare_digest(name.encode(), self.bootstrap_name.encode()):
            presented = password.decode("utf-8", errors="replace")
            if await self.bootstrap(presented, source=remote_ip or "-") is not None:
                return SignIn.BOOTSTRAP
        admin = await self.store.admin(name) if NAME.fullmatch(name) else None
        # Counted like the engine counts a mail login: a name that is no administrator
        # takes the same steps under a digest, so neither reply nor time tells them apart.
        subject = ADMIN_OWNER + admin.name if admin else unknown_subject(ADMIN_OWNER + name)
        if guard is not None and source is not None:
            delay = await guard.delay(source, subject)
            if delay > 0:
                await asyncio.sleep(delay)
        stored = schemes.parse(admin.password) if admin else schemes.dummy_hash(_POLICY)
        try:
            ok = await self.hasher.verify(password, stored) and admin is not None
        except SchemeError:
            ok = False
        if not ok or admin is None:
            if guard is not None and source is not None:
                await guard.failed(source, uid=subject, password=password)
            return SignIn.INVALID
        if guard is not None and source is not None:
            await guard.succeeded(source, subject)
        factor = await self.store.factor(ADMIN_OWNER + admin.name)
        if factor is None or not factor.confirmed:
            return SignIn.ENROL
        if not code:
            return SignIn.NEED_CODE
        verdict = await self.check_code(ADMIN_OWNER + admin.name, code)
        if verdict is totp.Verdict.LIMITED:
            return SignIn.LIMITED
        if verdict in (totp.Verdict.ACCEPTED, totp.Verdict.RECOVERY):
            return SignIn.OK
        return SignIn.NEED_CODE

    # ------------------------------------------------------------------ administrators

    async def admins(self) -> list[Administrator]:
        return await self.store.admins()

    async def add_admin(
        self, by: Principal, name: str, password: bytes, role: str = "admin"
    ) -> Administrator:
        """A new administrator. The bootstrap principal may create only the first,
        and only as ``admin``; everyone else needs the right to manage staff."""
        _check_name(name, "administrator")
        grant = _grant(role, ADMIN_ROLES, "role")
        _check_password(password)
        if by.kind != "bootstrap":
            by.require(Action.MANAGE_STAFF)
        elif grant is not Grant.ADMIN:
            raise NotPermitted("the first administrator has the admin role")
        hashed = await self.hasher.generate(password, _POLICY.scheme, policy=_POLICY)
        admin = Administrator(name=name, password=hashed, role=grant.value, created=self.clock())
        if not await self.store.add_admin(admin, first=by.kind == "bootstrap"):
            raise NotPermitted("an administrator exists: the bootstrap token is closed")
        await self.audit.record("admin.add", name, ("name", "password", "role"))
        return admin

    async def remove_admin(self, by: Principal, name: str) -> None:
        by.require(Action.MANAGE_STAFF)
        admin = await self._admin(name)
        await self._keep_an_admin(admin, None)
        await self.store.remove_admin(name)
        await self.store.swap_factor(
            ADMIN_OWNER + name, await self._version(ADMIN_OWNER + name), None
        )
        await self.audit.record("admin.remove", name)

    async def set_role(self, by: Principal, name: str, role: str) -> Administrator:
        by.require(Action.MANAGE_STAFF)
        grant = _grant(role, ADMIN_ROLES, "role")
        admin = await self._admin(name)
        await self._keep_an_admin(admin, grant)
        new = dataclasses.replace(admin, role=grant.value)
        if not await self.store.replace_admin(new):
            raise AccountNotFound(f"no administrator {name}")
        await self.audit.record("admin.set-role", name, ("role",))
        return new

    async def set_admin_password(self, by: Principal, name: str, password: bytes) -> None:
        """A new password for an administrator: their own, or anyone's for an admin."""
        if not (by.kind == "admin" and by.name == name):
            by.require(Action.MANAGE_STAFF)
        _check_password(password)
        admin = await self._admin(name)
        hashed = await self.hasher.generate(password, _POLICY.scheme, policy=_POLICY)
        if not await self.store.replace_admin(dataclasses.replace(admin, password=hashed)):
            raise AccountNotFound(f"no administrator {name}")
        await self.audit.record("admin.password", name, ("password",))

    async def _admin(self, name: str) -> Administrator:
        admin = await self.store.admin(name)
        if admin is None:
            raise AccountNotFound(f"no administrator {name}")
        return admin

    async def _keep_an_admin(self, admin: Administrator, new_role: Grant | None) -> None:
        """Refuse the change that would leave no administrator with the admin role."""
        if admin.role != Grant.ADMIN.value or new_role is Grant.ADMIN:
            return
        others = [a for a in await self.store.admins() if a.role == Grant.ADMIN.value]
        if len(others) <= 1:
            raise NotPermitted("the last administrator with the admin role must stay")

    # ------------------------------------------------------------------ API tokens

    async def tokens(self) -> list[ApiToken]:
        return await self.store.tokens()

    async def create_token(
        self, by: Principal, name: str, scope: str, *, expires: float | None = None
    ) -> NewToken:
        """A new named token; ``value`` is returned once. Nobody issues a token with
        more rights than they have (only ``admin`` may create tokens at all)."""
        by.require(Action.MANAGE_STAFF)
        _check_name(name, "token")
        grant = _grant(scope, TOKEN_SCOPES, "scope")
        if expires is not None and expires <= self.clock():
            raise InvalidAccount("expires: a time in the future")
        issued = tokens.issue(tokens.TokenKind.API_TOKEN)
        token = ApiToken(
            name=name,
            digest=issued.digest,
            scope=grant.value,
            created=self.clock(),
            created_by=by.label,
            expires=expires,
        )
        await self.store.add_token(token)
        await self.audit.record("token.create", name, ("name", "scope", "expires"))
        return NewToken(token=token, value=issued.value)

    async def revoke_token(self, by: Principal, name: str) -> None:
        by.require(Action.MANAGE_STAFF)
        if not await self.store.remove_token(name):
            raise AccountNotFound(f"no token {name}")
        await self.audit.record("token.revoke", name)

    # ------------------------------------------------------------------ second factors

    async def factor_confirmed(self, owner: str) -> bool:
        factor = await self.store.factor(owner)
        return factor is not None and factor.confirmed

    async def _version(self, owner: str) -> int | None:
        factor = await self.store.factor(owner)
        return None if factor is None else factor.version

    async def enrol(self, owner: str, *, account: str) -> Enrolment:
        """A fresh secret for ``owner`` (replacing an unconfirmed one); refused while a
        confirmed factor exists (it must be reset or turned off first)."""
        for _ in range(_SWAP_ATTEMPTS):
            current = await self.store.factor(owner)
            if current is not None and current.confirmed:
                raise InvalidAccount("two-factor sign-in is already set up")
            secret = totp.new_secret()
            new = SecondFactor(owner=owner, secret=secret)
            if await self.store.swap_factor(
                owner, None if current is None else current.version, new
            ):
                link = totp.uri(secret, account=account, issuer=self.issuer)
                return Enrolment(secret=secret, uri=link, svg=totp.qr_svg(link))
        raise StateUnavailable("the second factor kept changing; try again")

    async def enrolment(self, owner: str, *, account: str) -> Enrolment | None:
        """The pending (unconfirmed) enrolment of ``owner``, shown again, or None."""
        current = await self.store.factor(owner)
        if current is None or current.confirmed:
            return None
        link = totp.uri(current.secret, account=account, issuer=self.issuer)
        return Enrolment(secret=current.secret, uri=link, svg=totp.qr_svg(link))

    async def confirm(self, owner: str, code: str) -> list[str] | None:
        """Confirm the pending enrolment with a first code: the ten recovery codes
        (shown once), or None when the code is wrong (or rate-limited)."""
        for _ in range(_SWAP_ATTEMPTS):
            current = await self.store.factor(owner)
            if current is None or current.confirmed:
                return None
            verdict, after = totp.check(current, code, self.clock())
            codes: list[str] = []
            if verdict is totp.Verdict.ACCEPTED:
                codes = totp.new_recovery_codes()
                after = dataclasses.replace(
                    after, recovery=tuple(totp.recovery_digest(c) for c in codes)
                )
            if after is not current and not await self.store.swap_factor(
                owner, current.version, after
            ):
                continue
            if verdict is not totp.Verdict.ACCEPTED:
                return None
            await self.audit.record("totp.enrol", audit_target(owner), ("secret", "recovery_codes"))
            return codes
        raise StateUnavailable("the second factor kept changing; try again")

    async def check_code(self, owner: str, code: str) -> totp.Verdict:
        """Judge a code of a confirmed factor and store what that changes (the step
        used, a recovery code gone, a failure counted) before answering."""
        for _ in range(_SWAP_ATTEMPTS):
            current = await self.store.factor(owner)
            if current is None or not current.confirmed:
                return totp.Verdict.WRONG
            verdict, after = totp.check(current, code, self.clock())
            if after is not current and not await self.store.swap_factor(
                owner, current.version, after
            ):
                continue
            if verdict is totp.Verdict.RECOVERY:
                await self.audit.record(
                    "totp.recovery-code-used", audit_target(owner), ("recovery_codes",)
                )
            return verdict
        raise StateUnavailable("the second factor kept changing; try again")

    async def reset_factor(self, by: Principal | None, owner: str) -> bool:
        """Remove ``owner``'s second factor (the next sign-in enrols anew). ``by`` None:
        the owner themself (who proved their password and a code before). False if
        there was none."""
        if by is not None:
            by.require(Action.MANAGE_STAFF)
        for _ in range(_SWAP_ATTEMPTS):
            version = await self._version(owner)
            if version is None:
                return False
            if await self.store.swap_factor(owner, version, None):
                await self.audit.record(
                    "totp.reset", audit_target(owner), ("secret", "recovery_codes")
                )
                return True
        raise StateUnavailable("the second factor kept changing; try again")
