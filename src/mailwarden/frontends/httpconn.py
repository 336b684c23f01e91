"""uvicorn's HTTP connection with mailwarden's limits: a connection cap and a header timeout.

uvicorn has neither: every accepted connection is served however many there
are (``limit_concurrency`` answers 503 but keeps the connection and its file
descriptor), and a client that connects and says nothing, or sends its request a
byte at a time, is never timed out (its keep-alive timer only runs between
requests). :func:`limited_protocol` makes the protocol class ``start_http``
gives uvicorn:

* a connection beyond ``http.max_connections`` (the :class:`ConnectionGate`) is
  closed as soon as it is accepted;
* a request must arrive whole, head and body, within ``http.header_timeout``
  seconds of the connection opening or of its first byte; else the client gets
  ``408 Request Timeout`` (if nothing was sent yet) and the connection closes.

Between requests uvicorn's own keep-alive timer (``http.idle_timeout``) applies.

It also sends each response in one write: uvicorn writes a response's head and
its body separately, and on a keep-alive connection each write is a system call
and a segment the client wakes up for (``/api/v1/auth/json`` spent a fifth of its
CPU in those two writes). A request's writes are gathered (:class:`_Gathered`)
and go out together when the response is complete, or at the latest on the next
turn of the event loop (``100 Continue``, a streamed body).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from uvicorn.protocols.http.httptools_impl import (
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from mailwarden.errors import BodyTooLarge, ProtocolError
from mailwarden.frontends.asgi import Receive, Scope
from mailwarden.frontends.connlimit import ConnectionGate
from mailwarden.protocols.http_api import Reply, asgi_headers

#: Requests answered without the ASGI messages (see :func:`limited_protocol`):
#: what Dovecot's Lua passdb sends on every login.
DIRECT = ("POST", "/api/v1/auth/json")

#: The API's own handler (HttpApi.answer): a request's scope and body -> its reply.
Answer = Callable[[Scope, Receive], Awaitable[Reply]]

log = logging.getLogger("mailwarden.http")

_TIMEOUT_REPLY = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _Gathered:
    """The transport as a request's :class:`RequestResponseCycle` sees it: what it
    writes is held and written in one piece by :meth:`flush`, which runs when the
    response is complete, before a close, and on the next turn of the loop after
    the first held write (so nothing waits for a response that streams)."""

    __slots__ = ("_flush_soon", "_loop", "_parts", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._parts: list[bytes] = []
        self._flush_soon = False

    def write(self, data: bytes) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self.flush)
        self._parts.append(data)

    def flush(self) -> None:
        self._flush_soon = False
        parts = self._parts
        if parts:
            self._parts = []
            if not self.transport.is_closing():
                self.transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.flush()
        self.transport.close()


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body of a request, BodyTooLarge over ``limit`` bytes (ProtocolError
    when the client goes away first)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProtocolError("client went away")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def response_bytes(
    reply: Reply, *, default_headers: list[tuple[bytes, bytes]], keep_alive: bool
) -> bytes:
    """``reply`` as uvicorn writes it (status line, its default headers, the reply's,
    ``connection: close`` when the connection ends), head and body in one piece.

    A header value uvicorn would refuse (a control character) raises RuntimeError,
    as uvicorn's own ``send`` does.
    """
    headers = asgi_headers(reply)
    if HEADER_VALUE_RE.search(b"\t".join(value for _, value in headers)):
        raise RuntimeError("Invalid HTTP header value.")
    out = [STATUS_LINE[reply.status]]
    for name, value in (*default_headers, *headers):
        out += (name, b": ", value, b"\r\n")
    if not keep_alive:
        out.append(b"connection: close\r\n")
    out += (b"\r\n", reply.body)
    return b"".join(out)


def limited_protocol(
    gate: ConnectionGate, header_timeout: Callable[[], float], answer: Answer | None = None
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol admitted by ``gate`` and timed by ``header_timeout()``.

    With ``answer``, a request for :data:`DIRECT` is answered by calling it and
    writing the reply, instead of running the ASGI app with uvicorn's messages
    (dicts for the body and the response, a check of every header): the same
    bytes on the wire for a fifth less CPU. Everything else (parsing, pipelining,
    keep-alive, ``100 Continue`` through the request's ``receive``, flow
    control) stays uvicorn's.
    """

    class LimitedHttpProtocol(HttpToolsProtocol):
        _admitted: bool = False
        _head_timer: asyncio.TimerHandle | None = None
        #: When the request being read must be whole; None between requests.
        _head_deadline: float | None = None
        _out: _Gathered | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._out = _Gathered(transport, self.loop)
            if not gate.admit():
                transport.abort()  # connection_lost follows
                return
            self._admitted = True
            self._start_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_deadline = None
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            if self._admitted:
                self._admitted = False
                gate.release()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_deadline is None:  # else the connection's first deadline holds
                self._start_head_timer()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            cycle: RequestResponseCycle | None = self.cycle
            if cycle is not None and self._out is not None:
                cycle.transport = self._out  # type: ignore[assignment]

        def on_message_complete(self) -> None:
            self._head_deadline = None  # the timer, if armed, finds nothing to time out
            super().on_message_complete()

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: object) -> None:
            scope = cycle.scope
            if answer is None or app is not self.app or (scope["method"], scope["path"]) != DIRECT:
                super()._start_asgi_task(cycle, app)  # type: ignore[arg-type]
                return
            task = self.loop.create_task(self._answer_directly(cycle, answer))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

        async def _answer_directly(self, cycle: RequestResponseCycle, answer: Answer) -> None:
            """What ``cycle.run_asgi`` and ``cycle.send`` do, for one whole reply."""
            try:
                reply = await answer(cycle.scope, cycle.receive)  # type: ignore[arg-type]
                data = response_bytes(
                    reply,
                    default_headers=self.server_state.default_headers,
                    keep_alive=cycle.keep_alive,
                )
                if cycle.flow.write_paused and not cycle.disconnected:
                    await cycle.flow.drain()
                if cycle.disconnected:
                    return
                cycle.response_started = True
                cycle.waiting_for_100_continue = False
                self._flush()  # a 100 Continue goes first
                self.transport.write(data)
                cycle.response_complete = True
                cycle.message_event.set()
                if not cycle.keep_alive:
                    self.transport.close()
                cycle.on_response()
            except BaseException as exc:
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
                if not cycle.response_started:
                    await cycle.send_500_response()
                else:
                    self.transport.close()
            finally:
                cycle.on_response = lambda: None

        def on_response_complete(self) -> None:
            self._flush()
            super().on_response_complete()

        def send_400_response(self, msg: str) -> None:
            self._flush()  # whatever went before stays before
            super().send_400_response(msg)

        def _flush(self) -> None:
            if self._out is not None:
                self._out.flush()

        def _start_head_timer(self) -> None:
            """A deadline for the request now begun. One timer serves many requests
            on a keep-alive connection: it is armed only when none is (or when the
            one armed would fire too late, after ``header_timeout`` was lowered),
            and re-armed when it fires before the deadline of the request then
            being read, instead of one timer armed and cancelled per request."""
            deadline = self._head_deadline = self.loop.time() + header_timeout()
            timer = self._head_timer
            if timer is not None:
                if timer.when() <= deadline:
                    return
                timer.cancel()
            self._head_timer = self.loop.call_at(deadline, self._head_timed_out)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            deadline = self._head_deadline
            if deadline is None:
                return  # between requests: the next one arms a timer again
            if self.loop.time() < deadline:
                self._head_timer = self.loop.call_at(deadline, self._head_timed_out)
                return
            if self.transport.is_closing():
                return
            log.debug("HTTP client %s: request not complete in time, closing", self.client)
            self._flush()
            cycle = self.cycle  # the last request's, if any
            if cycle is None or cycle.response_complete or not cycle.response_started:
                self.transport.write(_TIMEOUT_REPLY)
            self.transport.close()

    return LimitedHttpProtocol
