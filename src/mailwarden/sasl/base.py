"""The SASL mechanism interface: step results, the per-request context, the session base.

A mechanism *session* is a pure state machine for one authentication request. The
front end feeds it what the client sent (already base64-decoded) and, when asked,
the user's stored credentials; each call returns exactly one :data:`Step`:

* :class:`Challenge` – send ``data`` to the client (Dovecot: ``CONT``) and feed the
  reply to :meth:`Mechanism.respond`;
* :class:`NeedCredentials` – look up ``username``'s credentials in password scheme
  ``scheme`` (``Engine.credentials``) and feed the bytes to
  :meth:`Mechanism.provide_credentials`. The engine answers unknown users with
  deterministic fake credentials, so the exchange looks the same either way;
* :class:`Finished` – build an :class:`~mailwarden.model.AuthAttempt` from it and
  call ``Engine.authenticate``. On ``Accepted``, ``success_data`` (SCRAM
  server-final, DIGEST-MD5 rspauth) must reach the client: Dovecot puts it in
  ``OK … resp=`` when the request carried ``final-resp-ok``, else sends it as one
  more ``CONT`` and answers the client's (empty) reply with ``OK``. On ``Denied``,
  ``failure_data`` (the OAuth JSON error) is sent as a ``CONT`` first and the
  client's dummy reply is answered with ``FAIL``. Neither extra round applies to
  ``Unavailable``, which fails at once with ``code=temp_fail``;
* :class:`MechanismFailed` – the client's data is malformed; answer ``FAIL``.
  ``reason`` is for the log only: Dovecot never shows it to the client.

A session never raises for anything the client sends: every byte string yields a
step. Calling a method the session is not waiting for is a bug in the caller and
raises :class:`RuntimeError`.

Mechanisms are written as generators (:meth:`Mechanism._exchange`) so an exchange
reads top to bottom; the base class drives the generator and enforces the call
order. Nothing here does I/O: randomness and the clock come from
:class:`MechanismContext` so tests can pin them.
"""

from __future__ import annotations

import abc
import base64
import binascii
import enum
import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import field
from typing import ClassVar, TypeAlias

from mailwarden.errors import LocalProtocolError
from mailwarden.model import BearerToken, CredentialProof, Password
from mailwarden.records import record

# --------------------------------------------------------------------------- flags


class MechFlag(enum.Flag):
    """Security properties a mechanism advertises (Dovecot's ``MECH`` line words).

    Members are declared in the order Dovecot writes them (mech.c:97-112), which
    :func:`flag_words` keeps.
    """

    NONE = 0
    PRIVATE = enum.auto()
    ANONYMOUS = enum.auto()
    PLAINTEXT = enum.auto()
    DICTIONARY = enum.auto()
    ACTIVE = enum.auto()
    FORWARD_SECRECY = enum.auto()
    MUTUAL_AUTH = enum.auto()


_FLAG_WORDS: tuple[tuple[MechFlag, str], ...] = (
    (MechFlag.PRIVATE, "private"),
    (MechFlag.ANONYMOUS, "anonymous"),
    (MechFlag.PLAINTEXT, "plaintext"),
    (MechFlag.DICTIONARY, "dictionary"),
    (MechFlag.ACTIVE, "active"),
    (MechFlag.FORWARD_SECRECY, "forward-secrecy"),
    (MechFlag.MUTUAL_AUTH, "mutual-auth"),
)


def flag_words(flags: MechFlag) -> tuple[str, ...]:
    """The ``MECH`` line words for ``flags``, in Dovecot's order."""
    return tuple(word for flag, word in _FLAG_WORDS if flag in flags)


# --------------------------------------------------------------------------- steps


@record
class Challenge:
    """Send ``data`` to the client and wait for its response."""

    data: bytes


@record
class NeedCredentials:
    """Look up ``username``'s stored credentials in password scheme ``scheme``.

    Formats (what the engine returns and the mechanism expects): ``PLAIN`` the
    password bytes; ``CRAM-MD5`` the 32-byte MD5 state; ``DIGEST-MD5`` the 16-byte
    ``MD5(user:realm:password)``; ``SCRAM-SHA-1``/``SCRAM-SHA-256`` the ASCII
    ``iter,b64salt,b64storedkey,b64serverkey``.
    """

    username: str
    scheme: str


@record
class Finished:
    """The exchange is complete; the engine decides.

    ``authcid`` is who authenticates, ``authzid`` who they want to act as (``None``
    when absent or equal to ``authcid``). ``credentials`` is what the engine checks:
    a :class:`~mailwarden.model.Password`, a :class:`~mailwarden.model.BearerToken`
    (XOAUTH2, OAUTHBEARER), a :class:`~mailwarden.model.CredentialProof`, or ``None``
    (ANONYMOUS, EXTERNAL).
    ``success_data`` is sent only after ``Accepted``; ``failure_data`` only after
    ``Denied`` (see the module docstring for how).
    """

    authcid: str
    authzid: str | None
    credentials: Password | BearerToken | CredentialProof | None
    success_data: bytes | None = None
    failure_data: bytes | None = None


@record
class MechanismFailed:
    """The client's data is malformed or unusable; the request fails.

    ``reason`` goes to the log, never to the client. ``user`` is the username the
    mechanism had learnt before failing, for Dovecot's ``FAIL … user=``. ``code`` is
    a Dovecot ``FAIL`` code when one applies (none of the mechanisms here needs one
    today; malformed data is a plain failure in Dovecot).
    """

    reason: str
    code: str | None = None
    user: str | None = None


Step: TypeAlias = Challenge | NeedCredentials | Finished | MechanismFailed

Exchange: TypeAlias = Generator[Challenge | NeedCredentials, bytes, Finished | MechanismFailed]
"""What :meth:`Mechanism._exchange` is: yields requests, receives bytes, returns the end."""


# --------------------------------------------------------------------------- context


@record
class MechanismContext:
    """What a session may need to know about its server and request.

    ``hostname`` goes into CRAM-MD5 challenges; ``realms`` into DIGEST-MD5's
    (Dovecot's ``auth_realms``); ``anonymous_username`` is Dovecot's
    ``auth_anonymous_username`` (empty disables ANONYMOUS); ``cert_username`` is the
    name from a verified client certificate, when the front end trusts it
    (``auth_ssl_username_from_cert``), for EXTERNAL. ``spid``, ``cuid`` and
    ``started`` (the server's start, unix seconds) bind APOP challenges to this
    server and connection. ``clock`` and ``random_bytes`` are injectable for tests.
    """

    hostname: str = "localhost"
    realms: tuple[str, ...] = ()
    anonymous_username: str = "anonymous"
    cert_username: str | None = None
    spid: int = 0
    cuid: int = 0
    started: int = 0
    clock: Callable[[], float] = field(default=time.time)
    random_bytes: Callable[[int], bytes] = field(default=secrets.token_bytes)


# --------------------------------------------------------------------------- sessions


_NUL_REASON = "unexpected NUL in authentication data"


def immediately(end: Finished | MechanismFailed) -> Exchange:
    """An exchange that ends without a round trip (APOP has nothing to ask)."""
    yield from ()
    return end


def text(data: bytes) -> str:
    """Client bytes as text. Undecodable bytes survive as lone surrogates (PEP 383).

    Same convention as :meth:`Password.from_text`: nothing the client sends can
    make decoding fail, and ``encode("utf-8", "surrogateescape")`` gives the bytes
    back exactly (needed where a digest covers them).
    """
    return data.decode("utf-8", "surrogateescape")


def raw(value: str) -> bytes:
    """The inverse of :func:`text`."""
    return value.encode("utf-8", "surrogateescape")


def b64decode(value: str) -> bytes | None:
    """Strict RFC 4648 base64 (padding required, no other characters), or ``None``."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def authzid_or_none(authzid: str, authcid: str) -> str | None:
    """``None`` for an empty authzid or one equal to the authcid (no master login)."""
    return None if authzid in ("", authcid) else authzid


class Mechanism(abc.ABC):
    """One SASL exchange, server side. Subclasses implement :meth:`_exchange`.

    ``name`` is the IANA/Dovecot mechanism name, ``flags`` what its ``MECH`` line
    advertises. ``allows_nuls`` mirrors Dovecot's ``MECH_SEC_ALLOW_NULS``: for the
    other mechanisms any client data containing NUL fails the request before the
    mechanism sees it (auth-request.c, ``auth_request_fail_on_nuls``).
    """

    name: ClassVar[str]
    flags: ClassVar[MechFlag]
    allows_nuls: ClassVar[bool] = False

    def __init__(self, context: MechanismContext | None = None) -> None:
        self.context = context if context is not None else MechanismContext()
        self._exchange_gen: Exchange | None = None
        self._awaiting: type[Challenge] | type[NeedCredentials] | None = None
        self._done = False

    @classmethod
    def flag_words(cls) -> tuple[str, ...]:
        """The words of this mechanism's ``MECH`` line after its name."""
        return flag_words(cls.flags)

    @property
    def done(self) -> bool:
        """True once a :class:`Finished` or :class:`MechanismFailed` was returned."""
        return self._done

    @classmethod
    def finish_at_once(cls, initial_response: bytes | None) -> Finished | MechanismFailed | None:
        """The end of the exchange when the initial response alone decides it (PLAIN
        with ``resp=``: nearly every login), without a session object; None when
        the exchange needs :meth:`start` and what follows. Same result as the
        session would give."""
        if initial_response is None:
            return None
        if not cls.allows_nuls and b"\0" in initial_response:
            return MechanismFailed(reason=_NUL_REASON)
        return cls._at_once(initial_response)

    @classmethod
    def _at_once(cls, initial_response: bytes) -> Finished | MechanismFailed | None:
        """Override for a mechanism whose initial response is the whole exchange."""
        return None

    def start(self, initial_response: bytes | None) -> Step:
        """Begin the exchange. ``None`` means no initial response; ``b""`` an empty one."""
        if self._exchange_gen is not None or self._done:
            raise LocalProtocolError(f"{self.name}: start() called twice")
        if initial_response is not None and (failed := self._nul_check(initial_response)):
            return self._finish(failed)
        self._exchange_gen = self._exchange(initial_response)
        return self._advance(None)

    def respond(self, data: bytes) -> Step:
        """Feed the client's response to the last :class:`Challenge`."""
        self._expect(Challenge, "respond")
        if failed := self._nul_check(data):
            return self._finish(failed)
        return self._advance(data)

    def provide_credentials(self, credentials: bytes) -> Step:
        """Feed the stored credentials asked for by the last :class:`NeedCredentials`."""
        self._expect(NeedCredentials, "provide_credentials")
        return self._advance(credentials)

    @abc.abstractmethod
    def _exchange(self, initial_response: bytes | None) -> Exchange:
        """The exchange as a generator: yield Challenge/NeedCredentials, return the end."""

    # ------------------------------------------------------------------ driving

    def _expect(self, kind: type[Challenge] | type[NeedCredentials], method: str) -> None:
        if self._awaiting is not kind:
            state = "finished" if self._done else f"waiting for {self._awaiting}"
            raise LocalProtocolError(f"{self.name}: {method}() called while {state}")

    def _nul_check(self, data: bytes) -> MechanismFailed | None:
        if not self.allows_nuls and b"\0" in data:
            return MechanismFailed(reason=_NUL_REASON)
        return None

    def _advance(self, value: bytes | None) -> Step:
        assert self._exchange_gen is not None
        try:
            step = next(self._exchange_gen) if value is None else self._exchange_gen.send(value)
        except StopIteration as stop:
            end: Finished | MechanismFailed = stop.value
            return self._finish(end)
        self._awaiting = type(step)
        return step

    def _finish(self, end: Finished | MechanismFailed) -> Finished | MechanismFailed:
        self._done = True
        self._awaiting = None
        if self._exchange_gen is not None:
            self._exchange_gen.close()
        return end
