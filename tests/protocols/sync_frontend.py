"""A synchronous stand-in for the asyncio Dovecot front end, for transcripts and peers.

It wires :class:`AuthClientConnection` to the SASL mechanisms exactly as the real
front end should (see mailwarden.sasl.base), with a toy "engine": passwords in a
dict, credentials derived the way Dovecot derives them, fake credentials for
unknown users. Replies are returned at once (no failure delay).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from mailwarden.model import BearerToken, Password
from mailwarden.protocols.dovecot_client import (
    AuthClientConnection,
    AuthRequest,
    CancelRequest,
    ClientCpid,
    ClientVersion,
    ConnectionClosed,
    ContinueRequest,
    RequestRejected,
    handshake,
)
from mailwarden.protocols.dovecot_master import (
    AuthMasterConnection,
    CacheFlush,
    ListUsers,
    MasterRequest,
    MasterVersion,
    PassLookup,
    UserLookup,
)
from mailwarden.protocols.dovecot_master import handshake as master_handshake
from mailwarden.sasl import MECHANISMS
from mailwarden.sasl.base import (
    Challenge,
    Finished,
    Mechanism,
    MechanismContext,
    MechanismFailed,
    NeedCredentials,
    Step,
)
from tests.sasl.clients import cram_md5_state, dovecot_digest_credentials, scram_stored

SECRET = b"toy engine secret"


@dataclass
class ToyEngine:
    """Passwords, master users and stored SCRAM values; decides like the real engine."""

    passwords: dict[str, bytes]
    masters: frozenset[str] = frozenset()
    stored: dict[tuple[str, str], bytes] = field(default_factory=dict)
    userdb: dict[str, dict[str, str]] = field(default_factory=dict)

    def credentials(self, user: str, scheme: str) -> bytes:
        if (user, scheme) in self.stored:
            return self.stored[(user, scheme)]
        password = self.passwords.get(user)
        if password is None:  # deterministic fakes: same shape, never valid
            password = hmac.digest(SECRET, user.encode(), "sha256")
        match scheme:
            case "PLAIN":
                return password
            case "CRAM-MD5":
                return cram_md5_state(password)
            case "DIGEST-MD5":
                return dovecot_digest_credentials(user, password)
            case "SCRAM-SHA-1" | "SCRAM-SHA-256":
                salt = hashlib.sha256(user.encode()).digest()[:16]
                digest = "sha1" if scheme == "SCRAM-SHA-1" else "sha256"
                return scram_stored(digest, password, salt, 4096)
        raise AssertionError(scheme)

    def authenticate(self, end: Finished, request: AuthRequest) -> bool:
        creds = end.credentials
        if end.authcid not in self.passwords and request.mechanism != "ANONYMOUS":
            return False
        if end.authzid is not None and end.authcid not in self.masters:
            return False
        if creds is None:
            return request.mechanism == "ANONYMOUS" or (
                request.mechanism == "EXTERNAL" and request.valid_client_cert
            )
        if isinstance(creds, BearerToken):  # no [oauth2]: the token is the password
            creds = creds.as_password()
        if isinstance(creds, Password):
            return hmac.compare_digest(creds.value, self.passwords[end.authcid])
        scheme = creds.schemes[0]
        return creds.check(scheme, self.credentials(end.authcid, scheme))


@dataclass
class _Session:
    request: AuthRequest
    mechanism: Mechanism
    finished: Finished | None = None
    accepted: bool = False


class SyncClientFrontend:
    """Bytes in, reply bytes out, for one client connection."""

    def __init__(
        self,
        engine: ToyEngine,
        *,
        spid: int = 12603,
        cuid: int = 1,
        cookie: bytes = bytes(16),
        context: Callable[[AuthRequest], MechanismContext] | None = None,
    ) -> None:
        self.engine = engine
        self.conn = AuthClientConnection(mechanisms=MECHANISMS)
        self.greeting = handshake(
            [(name, cls.flag_words()) for name, cls in MECHANISMS.items()],
            spid=spid,
            cuid=cuid,
            cookie=cookie,
        )
        self._context = context or (lambda r: MechanismContext(cert_username=r.cert_username))
        self._sessions: dict[int, _Session] = {}
        self.logins: dict[int, str] = {}  # successful request id -> user, for REQUEST
        self.requests: list[AuthRequest] = []
        self.closed = False

    def feed(self, data: bytes) -> bytes:
        self.conn.receive_data(data)
        out = b""
        while (event := self.conn.next_event()) is not None:
            match event:
                case ClientVersion() | ClientCpid():
                    pass
                case AuthRequest():
                    self.requests.append(event)
                    mech = MECHANISMS[event.mechanism](self._context(event))
                    session = _Session(request=event, mechanism=mech)
                    self._sessions[event.id] = session
                    out += self._drive(session, mech.start(event.initial_response))
                case ContinueRequest():
                    session = self._sessions[event.id]
                    if session.finished is not None:  # the client's answer to final data
                        out += self._reply(session)
                    else:
                        out += self._drive(session, session.mechanism.respond(event.data))
                case CancelRequest():
                    del self._sessions[event.id]
                case RequestRejected():
                    self._sessions.pop(event.id, None)
                    out += event.reply
                case ConnectionClosed():
                    self.closed = True
        return out

    def _drive(self, session: _Session, step: Step) -> bytes:
        request_id = session.request.id
        while True:
            match step:
                case Challenge():
                    return self.conn.cont(request_id, step.data)
                case NeedCredentials():
                    step = session.mechanism.provide_credentials(
                        self.engine.credentials(step.username, step.scheme)
                    )
                case MechanismFailed():
                    del self._sessions[request_id]
                    return self.conn.fail(request_id, user=step.user)
                case Finished():
                    session.finished = step
                    session.accepted = self.engine.authenticate(step, session.request)
                    extra = step.success_data if session.accepted else step.failure_data
                    if extra and not (session.accepted and session.request.final_resp_ok):
                        return self.conn.cont(request_id, extra)
                    return self._reply(session)

    def _reply(self, session: _Session) -> bytes:
        end = session.finished
        assert end is not None
        request_id = session.request.id
        del self._sessions[request_id]
        if not session.accepted:
            return self.conn.fail(request_id, user=end.authcid)
        user = end.authzid or end.authcid
        master = end.authcid if end.authzid is not None else None
        self.logins[request_id] = user
        return self.conn.accepted(
            request_id,
            user=user,
            passdb_fields={},
            original_user=master,
            master_user=master,
            anonymous=session.request.mechanism == "ANONYMOUS",
            resp=end.success_data if session.request.final_resp_ok else None,
        )


class SyncMasterFrontend:
    """Bytes in, reply bytes out, for one master or userdb connection."""

    def __init__(
        self,
        engine: ToyEngine,
        *,
        userdb_only: bool = False,
        spid: int = 12603,
        clients: dict[int, tuple[bytes, SyncClientFrontend]] | None = None,
    ) -> None:
        self.engine = engine
        self.conn = AuthMasterConnection(userdb_only=userdb_only)
        self.greeting = master_handshake(spid=spid)
        self.clients = clients if clients is not None else {}
        self.seen: list[object] = []

    def feed(self, data: bytes) -> bytes:
        self.conn.receive_data(data)
        out = b""
        while (event := self.conn.next_event()) is not None:
            self.seen.append(event)
            match event:
                case UserLookup():
                    fields = self.engine.userdb.get(event.user)
                    out += (
                        self.conn.not_found(event.id)
                        if fields is None
                        else self.conn.user_found(event.id, event.user, fields)
                    )
                case PassLookup():
                    out += (
                        self.conn.pass_found(event.id, event.user)
                        if event.user in self.engine.passwords
                        else self.conn.not_found(event.id)
                    )
                case ListUsers():
                    for user in sorted(self.engine.userdb):
                        out += self.conn.list_user(event.id, user)
                    out += self.conn.list_done(event.id)
                case CacheFlush():
                    out += self.conn.cache_flushed(event.id, len(event.users))
                case MasterRequest():
                    out += self._request(event)
                case MasterVersion():
                    pass
        return out

    def _request(self, event: MasterRequest) -> bytes:
        cookie, client = self.clients.get(event.client_pid, (b"", None))
        if client is None or not hmac.compare_digest(cookie, event.cookie):
            return self.conn.fail(event.id)
        user = client.logins.pop(event.auth_id, None)
        if user is None:
            return self.conn.fail(event.id)
        fields = dict(self.engine.userdb.get(user, {}))
        fields["auth_mech"] = "PLAIN"
        return self.conn.user_found(event.id, user, fields)
