"""The HTTP API front end: a small ASGI app served by uvicorn on mailwarden's own loop.

What belongs here: routing, reading the body with a size limit, checking the
caller's credentials, asking the engine and sending what protocols/nauthilus.py
built. No policy and no response format lives here.

uvicorn (with httptools) runs inside ``mailwarden serve`` as a task on the same
event loop as the other front ends: no extra process, and no signal handlers of
its own (the daemon owns SIGTERM/SIGINT). uvicorn answers ``Expect: 100-continue``
as soon as the app reads the body, which Dovecot's Lua HTTP client sends on
every POST (it stalls two seconds when nobody answers).

Endpoints (docs/http-api.md): ``/api/v1/auth/json`` (POST or GET; ``?mode=no-auth``,
``list-accounts``, ``master``), ``/api/v1/auth/nginx`` (protocols/nginx_auth.py), the admin
API (protocols/admin_api.py), ``/api/v1/cache/flush``, ``/api/v1/openapi.json``, ``/ping``,
and Dovecot's auth-policy route at ``authpolicy.path`` (frontends/http_policy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Generator, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from mailwarden.accounts.staff import Staff
from mailwarden.auth.engine import Engine, userdb_fields
from mailwarden.auth.policyserver import PolicyServer
from mailwarden.auth.roles import Action
from mailwarden.config import AuthPolicyConfig, Config, HttpConfig
from mailwarden.errors import (
    BodyTooLarge,
    ConfigError,
    ProtocolError,
)
from mailwarden.frontends.asgi import Receive, Scope, Send
from mailwarden.frontends.base import moved
from mailwarden.frontends.connlimit import ConnectionGate
from mailwarden.frontends.http_admin import AdminApi
from mailwarden.frontends.http_policy import PolicyRoute
from mailwarden.frontends.httpconn import limited_protocol, read_body
from mailwarden.frontends.inherited import InheritedSockets
from mailwarden.frontends.web import WebUi
from mailwarden.metrics import CONTENT_TYPE, Metrics
from mailwarden.model import AuthAttempt, Unavailable
from mailwarden.ports import AccountEditor
from mailwarden.protocols import admin_api, forwarded, http_api, nginx_auth, staff_api
from mailwarden.protocols import nauthilus as proto
from mailwarden.protocols.http_api import OPENAPI_PATH, Reply

log = logging.getLogger("mailwarden.http")


#: What ``/readyz`` reports: check name -> "ok", or "<state>: <what is wrong>" where
#: the one-word state is public and the rest only logged (app.check_backends).
Readiness = Callable[[], Awaitable[dict[str, str]]]


class HttpApi:
    """The ASGI application (``await api(scope, receive, send)``)."""

    def __init__(
        self,
        engine: Engine,
        config: HttpConfig,
        *,
        admin: AccountEditor | None = None,
        staff: Staff | None = None,
        metrics: Metrics | None = None,
        readiness: Readiness | None = None,
        authpolicy: AuthPolicyConfig | None = None,
        resolve: Callable[[str], Path] = Path,
    ) -> None:
        self.engine = engine
        self.config = config
        self.admin = admin
        # Dovecot's auth_policy_server_url (docs/policy-server.md), when enabled.
        self.policy = PolicyRoute(
            PolicyServer(engine.guard),
            authpolicy or AuthPolicyConfig(),
            resolve=resolve,
            metrics=metrics,
        )
        self.metrics = metrics
        self.readiness = readiness
        self.admin_api = AdminApi(engine, admin=admin, staff=staff)
        # The web page (frontends/web/, docs/web.md) answers every /ui path.
        self.web = WebUi(engine, config, admin=admin, staff=staff, metrics=metrics)
        self.routes = http_api.ROUTES
        self._sessions = http_api.SessionIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ui" or scope["path"].startswith("/ui/"):
            _request_headers(scope, self.config.trusted_proxies)
            await self.web(scope, receive, send)
            return
        await _send(send, await self.answer(scope, receive))

    async def answer(self, scope: Scope, receive: Receive) -> Reply:
        """The reply to one request of the API (every path but the web pages').

        The connection class (frontends/httpconn.py) calls this directly for
        ``POST /api/v1/auth/json``, without the ASGI messages in between.
        """
        headers = _request_headers(scope, self.config.trusted_proxies)
        session = self._sessions.next()
        try:
            reply = await self._dispatch(scope, headers, receive, session)
        except ProtocolError as exc:
            reply = proto.error_reply(400, str(exc))
        except BodyTooLarge:
            reply = proto.error_reply(413, "request body too large")
        except Exception:
            # The request boundary: log once with the session, never send a trace.
            log.exception("session=%s: internal error", session)
            reply = proto.tempfail_reply(session=session)
        if not any(name == "X-Nauthilus-Session" for name, _ in reply.headers):
            # The seed script logs this header on every reply; it must never be missing.
            reply = dataclasses.replace(
                reply, headers=(*reply.headers, *proto.session_headers(session))
            )
        return reply

    async def _dispatch(
        self, scope: Scope, headers: Mapping[str, str], receive: Receive, session: str
    ) -> Reply:
        path: str = scope["path"]
        method: str = scope["method"]
        if self.policy.serves(path):
            return await self.policy.answer(
                scope, headers, receive, session, max_body=self.config.max_body_bytes
            )
        admin_route = admin_api.route(path)
        if admin_route is not None:
            return await self.admin_api.accounts(
                admin_route, scope, headers, receive, session, self.config
            )
        staff_route = staff_api.route(path)
        if staff_route is not None:
            return await self.admin_api.staff_routes(
                staff_route, scope, headers, receive, session, self.config
            )
        allowed = self.routes.get(path)
        if allowed is None:
            return proto.error_reply(404, "no such endpoint")
        if (refused := proto.method_refusal(method, allowed)) is not None:
            return refused
        if path in ("/ping", "/healthz"):
            return http_api.ping_reply()
        if path == "/readyz":
            return await self._ready(session)
        if path == "/metrics":
            return await self._metrics(headers, scope)
        if path == OPENAPI_PATH:
            return http_api.openapi_reply()
        if path == "/api/v1/cache/flush":
            return await self._flush(headers, receive, scope)
        if path.startswith("/api/v1/bruteforce/"):
            return await self._bruteforce(path, headers, receive, scope)
        if path == "/api/v1/auth/nginx":
            return await self._nginx(headers, session)
        if path == "/api/v1/auth/header":
            return proto.as_header_reply(await self._auth_json(scope, headers, receive, session))
        return await self._auth_json(scope, headers, receive, session)

    async def _auth_json(
        self, scope: Scope, headers: Mapping[str, str], receive: Receive, session: str
    ) -> Reply:
        c = self.config
        authorization = headers.get("authorization")
        if not proto.basic_auth_ok(
            authorization, username=c.auth_username, password=c.auth_password
        ):
            return proto.error_reply(401, "valid HTTP Basic credentials required")
        mode = http_api.query_mode(scope.get("query_string", b""))
        caller_session = headers.get("x-dovecot-session", "-")
        if mode == "list-accounts":
            if not c.allow_list_accounts:
                return proto.error_reply(403, "list-accounts is not allowed for this caller")
            names = [name async for name in self.engine.iterate()]
            log.info("session=%s dovecot_session=%s list-accounts", session, caller_session)
            return proto.list_reply(names, accept=headers.get("accept"), session=session)
        if mode not in ("", "no-auth", "master"):
            return proto.error_reply(400, f"unknown mode {mode!r}")
        if scope["path"] == "/api/v1/auth/header":
            data: dict[str, Any] = proto.fields_from_headers(headers)
        else:
            data = proto.parse_json(await read_body(receive, c.max_body_bytes))
        request = proto.parse_request(data, need_password=mode != "no-auth")
        log.info(
            "session=%s dovecot_session=%s mode=%s user=%r service=%s client=%s",
            session,
            caller_session,
            mode or "auth",
            request.username,
            request.service,
            request.client_ip,
        )
        if mode == "no-auth":
            outcome = await self.engine.lookup(request.username, service=request.service)
            if isinstance(outcome, Unavailable):
                # The reply says only "try again" with this id; the cause is here.
                log.warning("session=%s lookup: temporary failure: %s", session, outcome.detail)
            return proto.lookup_reply(outcome, session=session, mapping=c.attributes)
        # mode=master: Dovecot's master passdb sends only the master's own name, so
        # without this check any account could act as master for every other one.
        attempt = request.attempt(session=session, require_master=mode == "master")
        result = await self.engine.authenticate(attempt)
        return proto.auth_reply(
            result,
            session=session,
            mapping=c.attributes,
            userdb=userdb_fields,
            disabled_text=c.disabled_text,
        )

    async def _nginx(self, headers: Mapping[str, str], session: str) -> Reply:
        c = self.config
        if not proto.basic_auth_ok(
            headers.get("authorization"), username=c.auth_username, password=c.auth_password
        ):
            return proto.error_reply(401, "valid HTTP Basic credentials required")
        try:
            request = nginx_auth.parse_headers(headers)
        except ProtocolError as exc:
            # nginx reads only Auth-Status; any other status is "internal error" to it.
            log.info("session=%s nginx: bad request: %s", session, exc)
            return Reply(status=200, headers=(("Auth-Status", str(exc)),), body=b"")
        attempt = AuthAttempt(
            username=request.user,
            credentials=request.password,
            service=request.protocol,
            mechanism=request.method.upper(),
            remote_ip=request.client_ip,
            session=session,
            frontend="nginx",
        )
        outcome = await self.engine.authenticate(attempt)
        reply_headers = nginx_auth.reply(
            outcome,
            request,
            backends=c.nginx_backends,
            default_host=c.nginx_default_host,
            disabled_text=c.disabled_text,
        )
        return Reply(status=200, headers=reply_headers, body=b"", content_type="text/plain")

    async def _flush(self, headers: Mapping[str, str], receive: Receive, scope: Scope) -> Reply:
        found = await self.admin_api.authorised(headers, scope, Action.UNBLOCK)
        if isinstance(found, Reply):
            return found
        data = proto.parse_json(await read_body(receive, self.config.max_body_bytes))
        user = http_api.flush_user(data)
        removed = await self.admin_api.flush(found, scope, user)
        return http_api.cache_flushed_reply(user, removed)

    async def _ready(self, session: str) -> Reply:
        """503 while the directory cannot answer or the guard runs without its store.

        Anyone may ask, so each check shows only its state word ("ok",
        "unavailable", "degraded"); what is wrong (an LDAP URL and its error, a
        database path) goes to the log under the request id in the body.
        """
        checks = await self.readiness() if self.readiness is not None else {}
        reply = http_api.ready_reply(checks, session=session)
        if reply.status != 200:
            log.warning("session=%s readyz: %s", session, json.dumps(checks))
        return reply

    async def _metrics(self, headers: Mapping[str, str], scope: Scope) -> Reply:
        c = self.config
        token = headers.get("authorization")
        if not proto.bearer_ok(token, token=c.metrics_token):
            found = await self.admin_api.authorised(headers, scope, Action.READ)
            if isinstance(found, Reply):
                return found
        if self.metrics is None:
            return proto.error_reply(404, "metrics are not enabled in this process")
        return Reply(status=200, headers=(), body=self.metrics.render(), content_type=CONTENT_TYPE)

    async def _bruteforce(
        self, path: str, headers: Mapping[str, str], receive: Receive, scope: Scope
    ) -> Reply:
        """Nauthilus-shaped brute-force admin: list bans, lift them (docs/guard.md)."""
        listing = path.endswith("/list")
        action = Action.READ if listing else Action.UNBLOCK
        found = await self.admin_api.authorised(headers, scope, action)
        if isinstance(found, Reply):
            return found
        if listing:
            # POST may carry a Nauthilus filter; everything is listed either way.
            await read_body(receive, self.config.max_body_bytes)
            return http_api.bans_reply(await self.engine.guard.describe_bans())
        data = proto.parse_json(await read_body(receive, self.config.max_body_bytes))
        target = proto.flush_target(data)
        lifted = await self.admin_api.unblock(found, scope, target)
        return http_api.unblocked_reply(target, lifted)


def _request_headers(scope: Scope, proxies: tuple[str, ...]) -> dict[str, str]:
    """The request's headers by lower-case name; with ``proxies``, every route sees
    the client a trusted proxy forwarded (protocols/forwarded.py)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if not proxies:
        return headers
    client = scope.get("client")
    peer = client[0] if client else None
    trusted = forwarded.networks(proxies)
    found = forwarded.origin(peer, scope.get("scheme", "http"), headers, trusted)
    if found.client_ip != peer:
        scope["client"] = (found.client_ip, 0)
    scope["scheme"] = found.scheme
    return headers


async def _send(send: Send, reply: Reply) -> None:
    headers = http_api.asgi_headers(reply)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """The HTTP API front end (frontends/base.py): built with everything it serves,
    listening from :meth:`start` (or :func:`start_http`, which does both)."""

    def __init__(
        self,
        engine: Engine,
        config: HttpConfig,
        *,
        resolve: Callable[[str], Path] = Path,
        admin: AccountEditor | None = None,
        staff: Staff | None = None,
        inherited: InheritedSockets | None = None,
        metrics: Metrics | None = None,
        readiness: Readiness | None = None,
        shutdown_timeout: float = 10.0,
        authpolicy: AuthPolicyConfig | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.resolve = resolve
        self.admin = admin
        self.staff = staff
        self.inherited = inherited
        self.metrics = metrics
        self.readiness = readiness
        self.shutdown_timeout = shutdown_timeout
        self.authpolicy = authpolicy
        api = self.api = HttpApi(
            engine,
            config,
            admin=admin,
            staff=staff,
            metrics=metrics,
            readiness=readiness,
            authpolicy=authpolicy,
            resolve=resolve,
        )
        # http.max_connections, over every listen address together.
        self.gate = ConnectionGate("http", lambda: api.config.max_connections)
        # With tls_cert/tls_key every listener speaks HTTPS only (TLS 1.2 or newer,
        # Python's default ciphers); an unreadable or mismatched pair is a ConfigError
        # here, before anything is bound.
        kwargs: dict[str, Any] = {}
        if config.tls_cert:
            kwargs = _tls_settings(resolve(config.tls_cert), resolve(config.tls_key))
        uv_config = uvicorn.Config(
            api,
            # uvicorn's httptools protocol with a connection cap and a header timeout.
            http=limited_protocol(self.gate, lambda: api.config.header_timeout, api.answer),
            loop="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            # uvicorn would take X-Forwarded-For/-Proto from 127.0.0.1 (its default
            # forwarded_allow_ips): HttpApi believes only http.trusted_proxies.
            proxy_headers=False,
            timeout_keep_alive=math.ceil(config.idle_timeout),
            # SIGTERM: requests in flight get this long to finish (server.shutdown_timeout).
            timeout_graceful_shutdown=max(1, math.ceil(shutdown_timeout)),
            **kwargs,
        )
        self._server = _Server(uv_config)
        self.sockets: list[socket.socket] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind every ``listen`` address and start serving; returns once it accepts.
        With ``inherited`` (a worker of ``serve --workers``), serve on the sockets the
        supervisor bound with :func:`bind_listener` instead."""
        config, server = self.config, self._server
        if self.inherited is None:
            sockets = [bind_listener(addr) for addr in config.listen]
        else:
            inherited = self.inherited
            sockets = [s for addr in config.listen for s in inherited.get("http.listen", addr)]
        self.sockets = sockets
        task = self._task = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started:
            if task.done():
                for sock in sockets:
                    sock.close()
                await task
                raise ConfigError("the HTTP server did not start", key="http")
            await asyncio.sleep(0.01)
        log.info("HTTP API listening on %s", ", ".join(config.listen))

    def protocol_factory(self) -> Callable[[], asyncio.Protocol]:
        """What serves one accepted connection (bench/http_cost.py drives it without sockets)."""
        uv_config, state = self._server.config, self._server.server_state
        if not uv_config.loaded:
            uv_config.load()

        def create() -> asyncio.Protocol:
            protocol: asyncio.Protocol = uv_config.http_protocol_class(  # type: ignore[call-arg]
                config=uv_config, server_state=state, app_state={}
            )
            return protocol

        return create

    def listening(self) -> list[str]:
        return [f"http {host}:{port}" for host, port in self.addresses]

    def connection_caps(self) -> dict[str, int]:
        return {"http": self.gate.limit}

    async def reconfigure(self, old: Config, new: Config, *, move: bool) -> HttpServer:
        """SIGHUP (frontends/base.py): new settings for the next requests; with
        ``move``, changed addresses or certificates start a new server (returned)
        and this one closes (an address both listen on is let go of first)."""
        self._apply(new.http)
        self.authpolicy = new.authpolicy
        self.api.policy.apply(new.authpolicy, self.resolve)
        if not move or not moved(old.http, new.http, "http"):
            return self
        shared = set(old.http.listen) & set(new.http.listen)
        if shared:
            await self.close()  # the same address is bound again below
        replacement = await start_http(
            self.engine,
            new.http,
            resolve=self.resolve,
            admin=self.admin,
            staff=self.staff,
            metrics=self.metrics,
            readiness=self.readiness,
            shutdown_timeout=self.shutdown_timeout,
            authpolicy=new.authpolicy,
        )
        if not shared:
            await self.close()
        log.info("HTTP API moved to %s", ", ".join(new.http.listen))
        return replacement

    def _apply(self, config: HttpConfig) -> None:
        """New credentials, attributes, backends... for the next requests."""
        self.config = self.api.config = config
        self._server.config.timeout_keep_alive = math.ceil(config.idle_timeout)
        if self.api.metrics is not None:
            self.api.metrics.set_services(config.metrics_services)
        # The web pages read their settings per request; their session key
        # stays (a new one would sign everybody out).
        self.api.web.config = config
        if self.staff is not None:
            self.staff.bootstrap_token = config.admin_token

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets]

    async def close(self, *, drain: float = 0.0) -> None:
        """Stop; requests in flight get uvicorn's graceful shutdown, bounded by
        ``shutdown_timeout`` (``drain`` is that value)."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        for sock in self.sockets:
            sock.close()


def bind_listener(addr: str) -> socket.socket:
    """A listening TCP socket for ``host:port`` (ConfigError naming ``http.listen``)."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # uvicorn writes the head and the body of a response separately; without
        # TCP_NODELAY (inherited by accepted sockets) Nagle holds the body back
        # until the client's delayed ACK, adding ~40 ms to every keep-alive request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, int(port)))
        sock.listen(512)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {addr}: {exc.strerror}", key="http.listen") from exc
    return sock


def _tls_settings(cert: Path, key: Path) -> dict[str, Any]:
    """uvicorn's TLS settings, after loading the pair once to report problems clearly.

    uvicorn loads the files only inside its serving task, where a missing file or
    a key that does not match the certificate would surface as a bare traceback.
    """
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is an OSError
        detail = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(
            f"cannot use certificate {cert} with key {key}: {detail}", key="http.tls_cert"
        ) from exc
    return {
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
        "ssl_version": ssl.PROTOCOL_TLS_SERVER,
    }


async def start_http(
    engine: Engine,
    config: HttpConfig,
    *,
    resolve: Callable[[str], Path],
    admin: AccountEditor | None = None,
    staff: Staff | None = None,
    inherited: InheritedSockets | None = None,
    metrics: Metrics | None = None,
    readiness: Readiness | None = None,
    shutdown_timeout: float = 10.0,
    authpolicy: AuthPolicyConfig | None = None,
) -> HttpServer:
    """An :class:`HttpServer`, started (see :meth:`HttpServer.start`)."""
    server = HttpServer(
        engine,
        config,
        resolve=resolve,
        admin=admin,
        staff=staff,
        inherited=inherited,
        metrics=metrics,
        readiness=readiness,
        shutdown_timeout=shutdown_timeout,
        authpolicy=authpolicy,
    )
    await server.start()
    return server
