"""The client protocol over asyncio: auth-client and auth-login sockets.

One :class:`ClientConnection` per accepted connection. It sends the handshake at
once (Exim ≤4.98 waits for it), then turns every ``AUTH`` into a task of its own,
so many requests on one connection run concurrently and each reply is written
when it is ready, in whatever order. A task drives one SASL mechanism session
(:mod:`mailwarden.sasl.base` explains the steps), asks the engine for
credentials and for the verdict, and maps the verdict to a reply:

========================================  =============================================
Engine outcome                            Reply
========================================  =============================================
``Accepted``                              ``OK`` with ``user=``, the passdb fields,
                                          ``original_user``, ``auth_user``, ``anonymous``
``Denied`` (credentials, network, ...)    ``FAIL`` with ``user=`` as the client typed it
``Denied`` (disabled, service disabled)   ... plus ``code=user_disabled``, ``reason=``
``Denied`` (authorization)                ... plus ``code=authz_fail``
``Unavailable``                           ``FAIL … code=temp_fail`` at once (or a close:
                                          see "Temporary failures")
========================================  =============================================

Why ``user=`` on a failure is safe: it echoes the name the client sent, so an
unknown user and a wrong password give byte-identical lines, and the engine makes
their timing equal. A reason is only ever shown after the password was proven.

**Failure delay.** Every ``FAIL`` that follows an authentication decision is sent
``failure_delay`` seconds (±10 %) after the client's last message for that
request, as Dovecot measures it (from ``last_access``); the jitter stands in for
Dovecot's shuffling of simultaneous failures. The wait happens inside the
request's task, so other requests on the connection go on. It never holds a reply
later than 9 s after the client's last message: Postfix gives up on a read after
10 s and reports the server as lost. Temporary failures and the codec's own
rejections (bad base64, unexpected CONT) are sent at once, as Dovecot sends them.
A ``nodelay`` passdb field skips the delay and is echoed, but only once the
password was proven right: honouring it for a wrong password would let the speed
of the reply tell which accounts exist. ``no-penalty`` concerns the per-IP
penalty, which is not the front end's business; it does not skip the delay.

**Temporary failures** (the engine says ``Unavailable``, or a request crashed)
are ``FAIL … code=temp_fail``, sent at once. Postfix and Exim, however, ignore
``code=`` and answer any ``FAIL`` with 535, which makes mail clients ask their
users for a password that was never wrong. The one temporary signal they know is
a lost connection: Postfix answers 454 and reconnects for the next attempt, Exim
answers 435 (reference §0.6, §1.5; xsasl_dovecot_server.c, auths/dovecot.c). So
for a client that announced protocol 1.0 or 1.1, as both do, and whose failing
request is its only one in flight (both send one at a time), the connection is
closed instead of sending the FAIL. Clients of protocol 1.2 (Dovecot, doveadm)
get the FAIL, and so does anyone with other requests in flight, which a close
would destroy.

**Timeouts.** A request waiting for the client's ``CONT`` is dropped without a
reply after ``request_timeout`` seconds (Dovecot: 150 s); Postfix never sends
``CANCEL``, so abandoned requests would otherwise pile up.

**Bounds.** Besides ``max_pending`` per connection, every request holds a place
under ``max_pending_total`` for all connections of the process together
(``DovecotState.requests``); a request that finds none gets a temporary failure.

**Trust.** ``valid-client-cert`` and ``cert_username=`` (what EXTERNAL logs in
with) are ignored, with a warning, unless the connection came through a socket
marked trusted (:mod:`~mailwarden.frontends.dovecot_sockets`).

**Login sockets.** On an auth-login socket the client's pid must not belong to
another live login connection, and a successful login (without ``nologin`` or
``proxy``) is kept in the :class:`~mailwarden.frontends.dovecot_common.LoginRegistry`
for the master's ``REQUEST``, as Dovecot keeps it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import assert_never

from mailwarden.config import DovecotConfig
from mailwarden.errors import LocalProtocolError, ProtocolError
from mailwarden.frontends.delay import delay_failure
from mailwarden.frontends.dovecot_common import Connection, DovecotState
from mailwarden.model import (
    Accepted,
    AuthAttempt,
    ClientCert,
    Denied,
    Prefetched,
    Unavailable,
)
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
from mailwarden.protocols.dovecot_master import FinishedLogin
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

log = logging.getLogger("mailwarden.dovecot")

# Clients announcing an older minor version (Postfix and Exim say 1.0) take every FAIL
# as final and ignore its code; only a lost connection reads as temporary to them.
_FAIL_CODES_MINOR = 2

# Passdb fields after which Dovecot does not keep a login for the master's REQUEST:
# the login process will not log the user in locally.
_NOT_FOR_MASTER = frozenset({"nologin", "proxy"})


@dataclass(slots=True, eq=False)
class _Pending:
    """One request in flight: its id, when the client last spoke, the awaited CONT."""

    id: int
    last_access: float
    cont: asyncio.Future[bytes] | None = field(default=None)
    task: asyncio.Task[None] | None = field(default=None)
    admitted: bool = False  # holds a place under dovecot.max_pending_total


def build_attempt(
    request: AuthRequest, end: Finished, prefetched: Prefetched | None = None
) -> AuthAttempt:
    """The engine's view of a finished exchange on a Dovecot client socket
    (``prefetched``: the account its credentials came from, if it asked for any)."""
    cert = None
    if request.valid_client_cert or request.cert_username is not None:
        cert = ClientCert(valid=request.valid_client_cert, username=request.cert_username)
    return AuthAttempt(
        username=end.authcid,
        credentials=end.credentials,
        service=request.service,
        mechanism=request.mechanism,
        authzid=end.authzid,
        local_ip=request.lip,
        local_port=request.lport,
        remote_ip=request.rip,
        remote_port=request.rport,
        real_remote_ip=request.real_rip or request.rip,
        secured=request.is_secured,
        client_cert=cert,
        session=request.session,
        frontend="dovecot",
        debug=request.debug,
        prefetched=prefetched,
    )


class ClientConnection(Connection):
    """One auth-client (``login=False``) or auth-login (``login=True``) connection."""

    def __init__(
        self,
        state: DovecotState,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        login: bool,
        label: str,
        cookie: bytes,
        trusted: bool = False,
    ) -> None:
        super().__init__(state, reader, writer, label=label)
        self.login = login
        self.trusted = trusted
        self.cuid = state.next_cuid()
        self.cookie = cookie
        self.codec = AuthClientConnection(
            mechanisms=[name for name, _ in state.mechanisms],
            max_line_length=state.config.max_line_length,
            max_pending=state.config.max_pending,
        )
        self._pending: dict[int, _Pending] = {}
        self._registered_pid: int | None = None
        self._plain_context: tuple[DovecotConfig, MechanismContext] | None = None

    # ------------------------------------------------------------------ I/O hooks

    def greeting(self) -> bytes:
        return handshake(
            self.state.mechanisms, spid=self.state.spid, cuid=self.cuid, cookie=self.cookie
        )

    def feed(self, data: bytes) -> None:
        self.codec.receive_data(data)

    def dispatch(self) -> None:
        while (event := self.codec.next_event()) is not None:
            match event:
                case ClientVersion():
                    pass
                case ClientCpid():
                    self._client_pid(event.pid)
                case AuthRequest():
                    self._start(event)
                case ContinueRequest():
                    self._continue(event)
                case CancelRequest():
                    self._drop(event.id)
                case RequestRejected():
                    log.info(
                        "dovecot %s: request %d rejected: %s", self.label, event.id, event.reason
                    )
                    self._drop(event.id)
                    self.write(event.reply)
                case ConnectionClosed():
                    self.closing = True
                case _:
                    assert_never(event)

    def closed(self) -> None:
        for pending in self._pending.values():
            if pending.admitted:
                self.state.requests.release()
        self._pending.clear()
        if self._registered_pid is not None:
            self.state.logins.unregister(self._registered_pid)

    def request_crashed(self, request_id: int) -> None:
        pending = self._pending.get(request_id)
        if pending is not None:
            self._temp_fail(pending, user=None)

    # ------------------------------------------------------------------ events

    def _client_pid(self, pid: int) -> None:
        self.label += f" pid={pid}"
        if not self.login:
            return
        if not self.state.logins.register(pid, self.cookie):
            raise ProtocolError(f"client pid {pid} is already in use by another login connection")
        self._registered_pid = pid

    def _start(self, request: AuthRequest) -> None:
        if not self.trusted and (request.valid_client_cert or request.cert_username is not None):
            # Only a trusted peer may vouch for a TLS client certificate; anyone else
            # could name any user and log in with EXTERNAL (dovecot_sockets.py).
            log.warning(
                "dovecot %s: request %d: client certificate parameters ignored: "
                "this socket is not trusted (dovecot.*_socket_trusted)",
                self.label,
                request.id,
            )
            request = dataclasses.replace(request, valid_client_cert=False, cert_username=None)
        pending = _Pending(id=request.id, last_access=asyncio.get_running_loop().time())
        self._pending[request.id] = pending
        pending.admitted = self.state.requests.admit()
        if not pending.admitted:
            # Too many requests in flight in the whole process: a temporary failure
            # now, instead of memory without bound (docs/operations.md).
            self._temp_fail(pending, user=None)
            return
        pending.task = self.spawn(self._authenticate(pending, request), request_id=request.id)

    def _unpend(self, request_id: int) -> _Pending | None:
        """Forget the request ``request_id`` (answered, dropped or timed out)."""
        pending = self._pending.pop(request_id, None)
        if pending is not None and pending.admitted:
            self.state.requests.release()
        return pending

    def _continue(self, event: ContinueRequest) -> None:
        pending = self._pending.get(event.id)
        if pending is None or pending.cont is None or pending.cont.done():
            # The codec accepts a CONT only after our CONT, and every CONT we send has
            # a waiting future: reaching this is a bug, so fail loudly at the boundary.
            raise LocalProtocolError(f"CONT for request {event.id}, which is not waiting for one")
        pending.last_access = asyncio.get_running_loop().time()
        pending.cont.set_result(event.data)

    def _drop(self, request_id: int) -> None:
        """The codec no longer has ``request_id`` pending: stop its work silently."""
        pending = self._unpend(request_id)
        if pending is not None and pending.task is not None:
            pending.task.cancel()

    def _reply(self, pending: _Pending, line: bytes) -> None:
        """Write the final reply of ``pending`` (the codec already finished it)."""
        self._unpend(pending.id)
        self.write(line)

    # ------------------------------------------------------------------ one request

    async def _authenticate(self, pending: _Pending, request: AuthRequest) -> None:
        kind = MECHANISMS[request.mechanism]
        step: Step | None = kind.finish_at_once(request.initial_response)
        mechanism: Mechanism | None = None
        prefetched: Prefetched | None = None  # the account the credentials came from
        if step is None:
            cert_username = request.cert_username if request.valid_client_cert else None
            mechanism = kind(self._context(cert_username))
            step = mechanism.start(request.initial_response)
        while True:
            match step:
                case Challenge():
                    assert mechanism is not None  # only a session asks
                    response = await self._ask(pending, step.data)
                    if response is None:
                        return
                    step = mechanism.respond(response)
                case NeedCredentials():
                    assert mechanism is not None
                    credentials = await self.state.engine.stored_credentials(
                        step.username, step.scheme
                    )
                    if isinstance(credentials, Unavailable):
                        log.warning(
                            "dovecot %s: request %d: credentials lookup failed: %s",
                            self.label,
                            request.id,
                            credentials.detail,
                        )
                        self._temp_fail(pending, user=step.username)
                        return
                    prefetched = credentials.found
                    step = mechanism.provide_credentials(credentials.value)
                case MechanismFailed():
                    log.info(
                        "dovecot %s: request %d: %s failed: %s",
                        self.label,
                        request.id,
                        request.mechanism,
                        step.reason,
                    )
                    await self._delay_failure(pending)
                    self._reply(
                        pending, self.codec.fail(pending.id, user=step.user, code=step.code)
                    )
                    return
                case Finished():
                    await self._decide(pending, request, step, prefetched)
                    return
                case _:
                    assert_never(step)

    def _context(self, cert_username: str | None) -> MechanismContext:
        """The SASL context of a request: the same for every request of the connection
        without a certificate name, until a reload changes the settings."""
        if cert_username is not None:
            return self.state.mechanism_context(cuid=self.cuid, cert_username=cert_username)
        config = self.state.config
        if self._plain_context is None or self._plain_context[0] is not config:
            context = self.state.mechanism_context(cuid=self.cuid, cert_username=None)
            self._plain_context = (config, context)
        return self._plain_context[1]

    async def _decide(
        self,
        pending: _Pending,
        request: AuthRequest,
        end: Finished,
        prefetched: Prefetched | None,
    ) -> None:
        outcome = await self.state.engine.authenticate(build_attempt(request, end, prefetched))
        match outcome:
            case Accepted():
                # The client must see the server's final SASL data before the OK; its
                # answer to this CONT carries nothing we need (reference §1.5).
                final = None if request.final_resp_ok else end.success_data
                if final and await self._ask(pending, final) is None:
                    return
                self._accept(pending, request, end, outcome)
            case Denied():
                # OAuth: the error JSON goes out as a CONT; the client's dummy answer
                # gets the FAIL.
                if end.failure_data and await self._ask(pending, end.failure_data) is None:
                    return
                await self._deny(pending, end, outcome)
            case Unavailable():
                self._temp_fail(pending, user=end.authcid)
            case _:
                assert_never(outcome)

    def _accept(
        self, pending: _Pending, request: AuthRequest, end: Finished, outcome: Accepted
    ) -> None:
        anonymous = outcome.anonymous
        line = self.codec.accepted(
            pending.id,
            user=outcome.user,
            passdb_fields=outcome.passdb_fields,
            original_user=outcome.original_user,
            master_user=outcome.master_user,
            anonymous=anonymous,
            resp=end.success_data if request.final_resp_ok else None,
        )
        self._reply(pending, line)
        if (
            self.login
            and self._registered_pid is not None
            and _NOT_FOR_MASTER.isdisjoint(outcome.passdb_fields)
        ):
            self.state.logins.keep(
                self._registered_pid,
                pending.id,
                FinishedLogin(
                    user=outcome.user,
                    mechanism=request.mechanism,
                    service=request.service,
                    master_user=outcome.master_user,
                    original_user=outcome.original_user,
                    local_name=request.local_name,
                    anonymous=anonymous,
                ),
            )

    async def _deny(self, pending: _Pending, end: Finished, outcome: Denied) -> None:
        # The engine sets nodelay only once the password was proven; only then may
        # the account's nodelay field be honoured (see the module docstring).
        nodelay = outcome.nodelay
        if not nodelay:
            await self._delay_failure(pending)
        line = self.codec.denied(
            pending.id,
            user=end.authcid,
            reason=outcome.reason,
            message=outcome.message,
            nodelay=nodelay,
        )
        self._reply(pending, line)

    def _temp_fail(self, pending: _Pending, *, user: str | None) -> None:
        """Tell the client to try again later, in a way it understands (module docstring)."""
        version = self.codec.version
        alone = self._pending.keys() == {pending.id}
        if version is not None and version.minor < _FAIL_CODES_MINOR and alone:
            log.warning(
                "dovecot %s: request %d failed temporarily; closing the connection, "
                "the way a protocol 1.%d client understands",
                self.label,
                pending.id,
                version.minor,
            )
            self.codec.forget(pending.id)
            self._unpend(pending.id)
            self.abort()
            return
        self._reply(pending, self.codec.temp_failed(pending.id, user=user))

    # ------------------------------------------------------------------ waiting

    async def _ask(self, pending: _Pending, data: bytes) -> bytes | None:
        """Send a CONT and wait for the client's answer; None when it timed out."""
        loop = asyncio.get_running_loop()
        pending.cont = loop.create_future()
        self.write(self.codec.cont(pending.id, data))
        try:
            return await asyncio.wait_for(pending.cont, self.state.config.request_timeout)
        except TimeoutError:
            log.info(
                "dovecot %s: request %d timed out waiting for the client", self.label, pending.id
            )
            self.codec.forget(pending.id)
            self._unpend(pending.id)
            return None
        finally:
            pending.cont = None

    async def _delay_failure(self, pending: _Pending) -> None:
        await delay_failure(self.state.config.failure_delay, pending.last_access)
