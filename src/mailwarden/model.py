"""Value types shared by every layer: accounts, login attempts and their outcomes.

Everything here is a frozen, slotted, keyword-only dataclass or an enum. Parsers
build these at the edge; nothing inward passes raw bytes, dicts of strings or
stringly flags. No I/O and no asyncio may be imported by this module.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeAlias

from mailwarden.records import record

EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Password:
    """A secret the client presented. Its repr never shows the value.

    Kept as bytes: mail clients send whatever encoding they like, and every
    scheme hashes bytes. ``text`` is for the few places that need a str.
    """

    value: bytes

    def __repr__(self) -> str:
        return "Password(<hidden>)"

    __str__ = __repr__

    @classmethod
    def from_text(cls, text: str) -> Password:
        return cls(text.encode("utf-8", "surrogateescape"))

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class BearerToken:
    """An OAuth 2.0 bearer token (RFC 6750) the client presented: XOAUTH2, OAUTHBEARER,
    or the HTTP API's ``password`` with ``"method": "xoauth2"``. Its repr never shows
    the value.

    A credential of its own, not a :class:`Password`: with ``[oauth2]`` configured the
    engine hands it to the token verifier (mailwarden.oauth2), never to a password
    scheme. Without ``[oauth2]`` it is verified like a password, as Dovecot does with
    a passdb that is not ``oauth2`` (docs/credentials.md).
    """

    value: str

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"

    __str__ = __repr__

    def as_password(self) -> Password:
        """The token as the password a non-OAuth2 site verifies it as."""
        return Password.from_text(self.value)


class AccountStatus(enum.StrEnum):
    """Lifecycle state of an account.

    qmail-ldap's ``nopop`` and ``noaccess`` are not statuses here: they are
    expressed through the per-service switches (see docs/accounts.md).
    """

    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"


PROFILE_FIELDS: tuple[str, ...] = (
    "name",
    "c",
    "l",
    "telephone_number",
    "facsimile_telephone_number",
    "postal_address",
    "postal_code",
    "login_shell",
    "email_forward",
    "irc_nick",
    "on_vacation",
    "labeled_uri",
    "latitude",
    "longitude",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """Self-service profile fields (the mail gateway's ``change`` command edits them)."""

    name: str | None = None
    c: str | None = None
    l: str | None = None  # noqa: E741 - the LDAP attribute is called l (locality)
    telephone_number: str | None = None
    facsimile_telephone_number: str | None = None
    postal_address: str | None = None
    postal_code: str | None = None
    login_shell: str | None = None
    email_forward: str | None = None
    irc_nick: str | None = None
    on_vacation: str | None = None
    labeled_uri: str | None = None
    latitude: str | None = None
    longitude: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The fields that are set, by name."""
        out: dict[str, str] = {}
        for name in PROFILE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


#: The service name of a sign-in on the user's web page. The web page is not a mail
#: service: an app password never opens it, and the main password of an account that
#: is set to app passwords only opens nothing else (auth/apppasswords.py).
WEB_SERVICE = "web"


@dataclass(frozen=True, slots=True, kw_only=True)
class LastUse:
    """When, for which service and from where an app password last logged in
    (``at``: Unix seconds; ``remote_ip``: None when the front end knew none)."""

    at: int
    service: str
    remote_ip: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPassword:
    """One app password of an account: a random secret issued by mailwarden
    (auth/tokens.py, ``TokenKind.APP_PASSWORD``), shown once and stored only as
    ``digest``. ``id`` names it for listing and revoking (unique within the
    account); ``services``: the services it may log in to (empty: every mail
    service; never the web page); ``expires`` and ``created`` are Unix seconds.
    Its repr leaves the digest out."""

    id: str
    name: str
    digest: str = field(repr=False)
    services: tuple[str, ...] = ()
    expires: int | None = None
    created: int = 0
    last_used: LastUse | None = None

    def allows(self, service: str) -> bool:
        """Whether it may log in to ``service`` (never the web page)."""
        name = service.lower()
        if name == WEB_SERVICE:
            return False
        return not self.services or name in self.services

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    @property
    def order(self) -> tuple[int, str]:
        """Where it is listed: by creation, then id (every directory reads them so)."""
        return (self.created, self.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAppPassword:
    """An app password just made: ``value`` is shown once, never stored or logged."""

    app_password: AppPassword
    value: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPasswordUsed:
    """A login with app password ``app_password`` of account ``uid``: what is
    written, later and in batches, as the app password's :class:`LastUse`."""

    uid: str
    app_password: str
    use: LastUse


@record
class Account:
    """One mail account as every directory stores it.

    ``password`` is the stored value (``{SCHEME}data`` or a bare crypt string);
    an empty string means no password can verify. ``services`` holds only the
    switches that differ from the default (on): a name that is absent is on.
    ``app_passwords``: the account's app passwords (:class:`AppPassword`);
    ``app_passwords_only``: mail services accept only those, and the main password
    opens the web page alone (docs/credentials.md, "App passwords").
    """

    uid: str
    mail: str | None = None
    alternate_addresses: tuple[str, ...] = ()
    password: str = ""
    status: AccountStatus = AccountStatus.ACTIVE
    services: Mapping[str, bool] = field(default_factory=lambda: EMPTY_SERVICES)
    mail_host: str | None = None
    home: str | None = None
    mail_location: str | None = None
    uid_number: int | None = None
    gid_number: int | None = None
    quota_bytes: int | None = None
    quota_messages: int | None = None
    master: bool = False
    allow_nets: tuple[str, ...] = ()
    passdb_fields: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    userdb_fields: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    pgp_fingerprint: str | None = None
    ssh_keys: tuple[str, ...] = ()
    dns_records: tuple[str, ...] = ()
    profile: Profile = field(default_factory=Profile)
    app_passwords: tuple[AppPassword, ...] = ()
    app_passwords_only: bool = False

    def service_enabled(self, service: str) -> bool:
        """Whether the per-service switch for ``service`` is on (default: on)."""
        return self.services.get(service.lower(), True)

    def logins(self) -> tuple[str, ...]:
        """Every name this account can be found by: uid, mail, alternates."""
        names = [self.uid]
        if self.mail:
            names.append(self.mail)
        names.extend(self.alternate_addresses)
        return tuple(dict.fromkeys(names))


EMPTY_SERVICES: Mapping[str, bool] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """One account as a list shows it (``mailwarden user list``): what a directory can
    read for a million accounts in seconds, without building whole :class:`Account`
    values. ``services_off``: the per-service switches that are off, sorted."""

    uid: str
    mail: str | None = None
    status: AccountStatus = AccountStatus.ACTIVE
    mail_host: str | None = None
    services_off: tuple[str, ...] = ()

    @classmethod
    def of(cls, account: Account) -> Listed:
        return cls(
            uid=account.uid,
            mail=account.mail,
            status=account.status,
            mail_host=account.mail_host,
            services_off=tuple(sorted(k for k, on in account.services.items() if not on)),
        )


# --------------------------------------------------------------------------- attempts


@record
class Prefetched:
    """The account ``login`` (a normalised login name) named when a challenge-response
    exchange asked for its credentials; ``None``: no account has that name."""

    login: str
    account: Account | None


@record
class StoredCredentials:
    """What :meth:`Engine.stored_credentials` answers: the credentials for the
    exchange (fake ones for an unknown name) and the account they came from, which
    the front end hands back in :attr:`AuthAttempt.prefetched`."""

    value: bytes
    found: Prefetched | None


@record
class ClientCert:
    """What the front end learnt about the client's TLS certificate."""

    valid: bool
    username: str | None = None


class CredentialProof(Protocol):
    """A challenge-response proof (CRAM-MD5, DIGEST-MD5, SCRAM, APOP ...).

    The mechanism says which stored credential schemes it can work with, in order
    of preference; the engine derives the account's credentials in one of them
    and asks the proof to check itself. No plaintext password ever reaches the
    engine for these mechanisms.
    """

    @property
    def schemes(self) -> tuple[str, ...]: ...

    def check(self, scheme: str, credentials: bytes) -> bool: ...


Credentials: TypeAlias = "Password | BearerToken | CredentialProof | None"


@record
class AuthAttempt:
    """Every field of one login attempt, as the front end parsed it.

    ``username`` is who authenticates (SASL authcid); ``authzid`` is who they
    want to act as, when different (SASL authzid, or the target of a master
    login). ``credentials`` is ``None`` for mechanisms that authenticate by
    other means (EXTERNAL with a verified client certificate), and a
    :class:`BearerToken` for XOAUTH2 and OAUTHBEARER.
    ``require_master`` is set when the caller asks as a master passdb (Dovecot's
    ``master = yes``, e.g. the HTTP API's ``?mode=master``): only an account
    allowed to act as a master user may pass.
    ``switches`` (pam_mapi's ``service=a|b``): besides ``service``'s own switch, at
    least one of these service switches must be on (none listed: no such rule).
    ``prefetched``: the account a challenge-response exchange already read for its
    credentials (:meth:`Engine.stored_credentials`), so that the decision does
    not read the directory a second time. ``realm``: a realm the client named
    apart from the login (saslauthd), appended to a login without ``@``.
    """

    username: str
    credentials: Password | BearerToken | CredentialProof | None
    service: str
    mechanism: str = "PLAIN"
    authzid: str | None = None
    local_ip: str | None = None
    local_port: int | None = None
    remote_ip: str | None = None
    remote_port: int | None = None
    real_remote_ip: str | None = None
    secured: bool = False
    client_cert: ClientCert | None = None
    session: str | None = None
    frontend: str = "internal"
    require_master: bool = False
    debug: bool = False  # the caller asked for a step-by-step log of this decision
    switches: tuple[str, ...] = ()
    prefetched: Prefetched | None = None
    realm: str | None = None


class CredentialKind(enum.Enum):
    """What kind of credential a login presented (the login history shows it):
    the main ``password`` (also proven by a challenge-response mechanism), one of
    the account's app passwords, an OAuth2 bearer ``token``, a client
    ``certificate`` (EXTERNAL), or ``none`` (SASL ANONYMOUS)."""

    PASSWORD = "password"  # noqa: S105 (a kind, not a secret)
    APP_PASSWORD = "app-password"  # noqa: S105
    TOKEN = "token"  # noqa: S105
    CERTIFICATE = "certificate"
    NONE = "none"


@record
class CredentialUsed:
    """The credential a login was decided on: its kind and, for an app password that
    matched, that app password's name (a wrong one matched none: ``password``)."""

    kind: CredentialKind
    app_password: str | None = None


# --------------------------------------------------------------------------- outcomes


class DenyReason(enum.Enum):
    """Why a login was denied. Only the engine and logs see the detail.

    ``CREDENTIALS`` covers unknown user *and* wrong password: they must be
    indistinguishable to the client, so they share one reason.
    """

    CREDENTIALS = "credentials"
    DISABLED = "disabled"
    SERVICE_DISABLED = "service_disabled"
    NETWORK = "network"
    AUTHZ = "authz"
    SCHEME = "scheme"
    BLOCKED = "blocked"


@record
class Accepted:
    """The login is valid. ``user`` is the canonical login name to act as.

    It carries everything a front end or a one-shot command answers with, so none
    reads the directory again after the decision: the passdb fields (``nodelay``
    among them), and the userdb fields of the account acted as
    (:attr:`userdb_fields`, made only when asked for: most logins never need them).
    """

    user: str
    account: Account
    passdb_fields: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    master_user: str | None = None
    original_user: str | None = None
    anonymous: bool = False  # the login is the anonymous user's (SASL ANONYMOUS)

    @property
    def nodelay(self) -> bool:
        """The passdb's ``nodelay`` field: send the reply without the failure delay."""
        return "nodelay" in self.passdb_fields

    @property
    def userdb_fields(self) -> dict[str, str]:
        """The Dovecot userdb fields of the account acted as (:func:`userdb_fields`)."""
        return userdb_fields(self.account)


@record
class Denied:
    """The login is refused for good.

    ``message`` is the text the user may see (``None``: the protocol's generic
    failure text). It is only ever set *after* the password was proven right,
    so it cannot be used to discover which accounts exist. ``user`` and
    ``nodelay`` (the account's passdb asks for no failure delay) likewise: a
    front end may skip its delay only for a password proven right.
    """

    reason: DenyReason
    message: str | None = None
    user: str | None = None
    nodelay: bool = False


@record
class Unavailable:
    """A backend failed; the client should try again later. Never a wrong password."""

    detail: str


AuthOutcome: TypeAlias = "Accepted | Denied | Unavailable"


def outcome_label(outcome: AuthOutcome) -> str:
    """``accepted``, ``denied``, ``unavailable`` or ``blocked`` (a banned source): the
    result as metrics and structured log lines name it."""
    match outcome:
        case Accepted():
            return "accepted"
        case Denied():
            return "blocked" if outcome.reason is DenyReason.BLOCKED else "denied"
    return "unavailable"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRecord:
    """A userdb answer: the account and the Dovecot-style fields that describe it."""

    user: str
    account: Account
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class NotFound:
    """The userdb has no such user."""


LookupOutcome: TypeAlias = "UserRecord | NotFound | Unavailable"


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


IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(text: str) -> IPAddress:
    """``ipaddress.ip_address(text)``, with a fast way for the usual dotted-quad IPv4.

    The module's parser costs about 15 µs, and a login from an address not seen
    before parsed it twice (the protocol's check, the guard's networks): a sixth of
    the CPU of a cold {PLAIN} login (issue #18). The fast way accepts exactly what
    the module does (four decimal parts, 0 to 255, no leading zeros, ASCII digits
    only) and hands anything else to it, so errors and IPv6 are the module's.
    """
    parts = text.split(".")
    if len(parts) == 4:
        value = 0
        for part in parts:
            if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()):
                break
            if part[0] == "0" and len(part) > 1:
                break
            octet = int(part)
            if octet > 255:
                break
            value = value << 8 | octet
        else:
            return ipaddress.IPv4Address(value)
    return ipaddress.ip_address(text)


def ip_in_nets(ip: str | None, nets: tuple[str, ...]) -> bool:
    """Dovecot's ``allow_nets`` rule: ``local`` matches a request with no IP.

    An unparsable network entry never matches (it is logged when the account is
    written, not here).
    """
    if ip is None or ip == "":
        return "local" in nets
    try:
        addr = parse_ip(ip)
    except ValueError:
        return False
    for net in nets:
        if net == "local":
            continue
        try:
            if addr in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


def login_key(name: str) -> str:
    """The form a login (uid or address) is indexed and compared under: logins are
    case-insensitive everywhere (directories, imports, account rules)."""
    return name.lower()


#: A guard target that names an account, not a network (``account:alice``): in the
#: guard's bans, and in what an administrator lifts (docs/guard.md).
ACCOUNT_PREFIX = "account:"


@dataclass(frozen=True, slots=True, kw_only=True)
class HashPolicy:
    """How new hashes are made, and which stored hashes are due for an upgrade.

    A value of its own (here, not in schemes/) because it is also the shape of the
    config's ``[passwords]`` section, which extends it: one set of fields and
    defaults for both.

    The defaults match ``doveadm pw`` for each scheme, except the default scheme
    itself, which is ARGON2ID (Dovecot's default is CRYPT = bcrypt cost 5).
    """

    scheme: str = "ARGON2ID"
    argon2_memory_kib: int = 65536
    argon2_time_cost: int = 3
    argon2_parallelism: int = 1
    bcrypt_cost: int = 5
    sha_crypt_rounds: int = 5000
    pbkdf2_rounds: int = 5000
    scram_iterations: int = 4096
