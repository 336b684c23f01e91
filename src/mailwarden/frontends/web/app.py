"""The ASGI application of ``/ui/...``: routing, the request boundary, sessions, sign-in.

What belongs here: the Starlette router and the routes table, reading a form
with a size limit, the security headers every answer carries, the error pages,
finding the session of a request, and signing in and out. The pages
themselves are in ``admin.py`` and ``selfservice.py``; rendering is Jinja2
(``pages.py``).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import assert_never
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Message

from mailwarden.accounts.audit import Actor, acting
from mailwarden.accounts.staff import ADMIN_OWNER, Principal, Staff
from mailwarden.auth.engine import Engine
from mailwarden.auth.roles import APP_PASSWORDS, Action
from mailwarden.config import HttpConfig
from mailwarden.errors import AccountChanged, HttpRefused, NotPermitted, TemporaryFailure
from mailwarden.frontends.asgi import Receive, Scope, Send
from mailwarden.frontends.web import admin as admin_pages
from mailwarden.frontends.web import auth, historypages, selfservice, staffpages
from mailwarden.frontends.web.pages import (
    ADMIN_NAV,
    FORM_KEY,
    PRINCIPAL_KEY,
    NavLink,
    Pages,
    first,
    form_of,
    redirect,
    static_file,
)
from mailwarden.frontends.web.sessions import (
    LOGIN_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    Session,
    SessionKeys,
    cookie_header,
    load_secret,
)
from mailwarden.metrics import Metrics
from mailwarden.model import Account, Denied, NotFound, Unavailable, UserRecord
from mailwarden.ports import AccountEditor

#: A form whose CSRF token does not match its session.
EXPIRED_FORM = "The form has expired or did not come from this site; reload it."

log = logging.getLogger("mailwarden.web")

#: Largest form accepted (an armoured OpenPGP key with signatures can be large).
MAX_FORM_BYTES = 262_144
MAX_FORM_FIELDS = 500
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", _CSP.encode()),
)
_FORM_TYPE = "application/x-www-form-urlencoded"


Endpoint = Callable[[Request], Awaitable[Response]]
AdminPage = Callable[["WebUi", Request, Session, Principal], Awaitable[Response]]
UserPage = Callable[["WebUi", Request, Session, Account], Awaitable[Response]]


def client_of(request: Request) -> str:
    return request.client.host if request.client else "-"


async def usable_account(ui: WebUi, session: Session) -> Account | None:
    """The account of a user session if it may still use the page, else None.

    The engine decides whether the account may use the ``web`` service now
    (:meth:`Engine.account_state`: it exists, is active, has the switch on); the
    page adds only that its password is still the one the session was made with.
    An outage is a TemporaryFailure (the 503 page), never a signed-out session.
    """
    if ui.admin is None:
        return None
    state = await ui.engine.account_state(session.uid, auth.SERVICE, uid=True)
    match state:
        case UserRecord():
            account = state.account
        case Denied() | NotFound():
            return None
        case Unavailable():
            raise TemporaryFailure(state.detail)
        case _:
            assert_never(state)
    if not hmac.compare_digest(session.tag, ui.keys.user_tag(account)):
        return None
    return account


class WebUi:
    """The ASGI application for ``/ui/...`` (see the package docstring)."""

    def __init__(
        self,
        engine: Engine,
        config: HttpConfig,
        *,
        admin: AccountEditor | None = None,
        staff: Staff | None = None,
        metrics: Metrics | None = None,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.config = config
        self.admin = admin
        self.staff = staff
        self.metrics = metrics
        self.clock = clock
        source = engine.config.source
        # Relative paths in the config are relative to its file (as app.resolve_path does).
        self.base = Path(source).resolve().parent if not source.startswith("<") else Path.cwd()
        if secret is None:
            secret = load_secret(config, base=self.base)
        # Through a lambda, not the method itself: tests replace ``clock`` later.
        self.keys = SessionKeys(secret, lambda: self.clock())  # noqa: PLW0108
        self.pages = Pages(self)
        #: The action a GET of each admin page needs (filled by the routes table).
        self.page_actions: dict[str, Action] = {}
        self.router = Router(routes=self._routes(), redirect_slashes=False, default=self._not_found)

    # ------------------------------------------------------------------ the boundary

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name for name, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in names)
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        request = Request(scope, _limited(receive, MAX_FORM_BYTES))
        try:
            await self._answer(request, secured)
            return
        except HttpRefused as exc:
            response = self.pages.error(exc.status, str(exc))
        except AccountChanged as exc:
            log.warning("web: %s", exc)
            response = self.pages.error(
                409, "The account was changed meanwhile; nothing was saved. Try again."
            )
        except TemporaryFailure as exc:
            rid = secrets.token_hex(8)
            log.warning("session=%s web: temporary failure: %s", rid, exc)
            response = self.pages.error(
                503, f"The service does not answer; try again (request id {rid})."
            )
        except Exception:
            # The request boundary: logged once, never a trace or a cause in the page.
            rid = secrets.token_hex(8)
            log.exception("session=%s web: internal error on %s", rid, scope.get("path"))
            response = self.pages.error(500, f"Internal error (id {rid}).")
        await response(scope, receive, secured)

    async def _answer(self, request: Request, send: Send) -> None:
        if not self.config.web_enabled:
            raise HttpRefused(404, "The web page is not enabled on this server.")
        if request.method not in ("GET", "HEAD", "POST"):
            raise HttpRefused(405, "Method not allowed.")
        if request.method == "POST":
            # Read before routing, so a bad or oversized form is refused first; the
            # endpoint's own Request (Starlette makes one per route) finds it here.
            request.scope[FORM_KEY] = await _parse_form(request)
        await self.router(request.scope, request.receive, send)

    def _routes(self) -> list[Route]:
        def route(path: str, endpoint: Endpoint) -> Route:
            return Route(PREFIX + path, endpoint, methods=["GET", "POST"])

        def admin(
            path: str,
            view: AdminPage,
            read: Action = Action.READ,
            write: Action = Action.EDIT_ACCOUNT,
        ) -> Route:
            """``view`` for an administrator whose role allows ``read`` (GET) or
            ``write`` (POST): the role check of every admin page (auth/roles.py),
            which the navigation asks too (:meth:`nav`)."""
            self.page_actions[path] = read

            async def endpoint(request: Request) -> Response:
                return await self._admin(request, view, write if request.method == "POST" else read)

            return route(path, endpoint)

        def user(view: UserPage) -> Endpoint:
            async def endpoint(request: Request) -> Response:
                return await self._user(request, view)

            return endpoint

        def page(view: Callable[[WebUi, Request], Awaitable[Response]]) -> Endpoint:
            async def endpoint(request: Request) -> Response:
                return await view(self, request)

            return endpoint

        a, s, st, h = admin_pages, selfservice, staffpages, historypages
        staff_write = Action.MANAGE_STAFF
        return [
            route("", self._home),
            route("/", self._home),
            route("/static/{name:path}", self._static),
            route("/login", self._user_login),
            route("/admin/login", page(st.admin_login)),
            route("/admin/first", page(st.first_admin)),
            route("/admin/enrol", page(st.admin_enrol)),
            route("/logout", self._logout),
            admin("/admin/accounts", a.accounts),
            # The page is its form: a role that may not create accounts may not open it.
            admin("/admin/new", a.new_account, read=Action.EDIT_ACCOUNT),
            admin("/admin/account", a.edit_account),
            admin("/admin/password", a.reset_password, write=Action.RESET_PASSWORD),
            admin("/admin/app-passwords", a.add_app_password, write=APP_PASSWORDS),
            admin("/admin/app-passwords/revoke", a.revoke_app_password, write=APP_PASSWORDS),
            admin("/admin/chart", a.chart),
            admin("/admin/stats", a.stats),
            admin("/admin/bans", a.bans),
            admin("/admin/unblock", a.unblock, write=Action.UNBLOCK),
            admin("/admin/audit", st.audit),
            admin("/admin/admins", st.admins, write=staff_write),
            admin("/admin/tokens", st.api_tokens, write=staff_write),
            admin("/admin/reset-totp", st.reset_user_totp, write=staff_write),
            admin("/admin/history", h.account_history, read=Action.READ_HISTORY),
            route("/me/totp", user(st.user_totp)),
            route("/me", user(s.me)),
            route("/me/", user(s.me)),
            route("/me/password", user(s.change_password)),
            route("/me/app-passwords", user(s.add_app_password)),
            route("/me/app-passwords/revoke", user(s.revoke_app_password)),
            route("/me/ssh", user(s.set_ssh_keys)),
            route("/me/pgp", user(s.set_pgp_key)),
            route("/me/profile", user(s.set_profile)),
            route("/me/history", user(h.my_history)),
            route("/me/not-me", user(h.not_me)),
        ]

    async def _static(self, request: Request) -> Response:
        return static_file(str(request.path_params["name"]))

    async def _not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise HttpRefused(404, "No such page.")

    # ------------------------------------------------------------------ sessions

    def session_of(self, request: Request) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        return self.keys.decode(cookie) if cookie else None

    def live_session(self, request: Request, role: str) -> Session | None:
        """The request's unexpired session of ``role`` (not yet checked further)."""
        session = self.session_of(request)
        if session is None or session.role != role or session.expires < self.clock():
            return None
        return session

    async def staff_session(
        self, request: Request, role: str = "admin"
    ) -> tuple[Session, Principal] | None:
        """An administrator's valid session: ``admin`` (signed in with a second factor)
        or ``enrol`` (password only, no factor yet: enrolment is all it opens). It
        ends when the password or role changes, or the factor is confirmed or reset."""
        session = self.live_session(request, role)
        if session is None or self.staff is None:
            return None
        found = await self.staff.admin_principal(session.uid)
        if found is None:
            return None
        principal, record = found
        tag = self.keys.staff_tag(record.name, record.password, record.role)
        if not hmac.compare_digest(session.tag, tag):
            return None
        enrolled = await self.staff.factor_confirmed(ADMIN_OWNER + record.name)
        return (session, principal) if enrolled == (role == "admin") else None

    async def session(self, request: Request, role: str) -> tuple[Session, Account | None] | None:
        """The valid session of ``role`` (and the user's account), or None."""
        if role == "admin":
            found = await self.staff_session(request)
            return None if found is None else (found[0], None)
        session = self.live_session(request, role)
        if session is None:
            return None
        account = await usable_account(self, session)
        return None if account is None else (session, account)

    def cookie(self, request: Request, name: str, value: str, *, max_age: int) -> str:
        return cookie_header(name, value, secure=request.url.scheme == "https", max_age=max_age)

    def new_session(self, request: Request, role: str, uid: str, tag: str) -> str:
        """The ``Set-Cookie`` value of a fresh session."""
        lifetime = self.config.session_lifetime
        _, value = self.keys.new(role, uid, tag, lifetime)
        return self.cookie(request, SESSION_COOKIE, value, max_age=int(lifetime))

    def _expired(self, request: Request, login: str) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        other = self.session_of(request)
        wanted = "admin" if login.startswith(PREFIX + "/admin/") else "user"
        if other is not None and other.role != wanted and other.expires >= self.clock():
            # A live session of the other role (a user opening an admin page): keep it.
            return redirect(login)
        if not cookie:
            return redirect(login)
        clear = self.cookie(request, SESSION_COOKIE, "", max_age=0)
        return redirect(login + "?done=expired", cookies=(clear,))

    def check_origin(self, request: Request) -> None:
        origin = request.headers.get("origin")
        # "null" (privacy contexts) is left to the token, which every POST needs anyway.
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise HttpRefused(403, "Cross-site form refused.")

    def check_csrf(self, request: Request, session: Session, form: FormData) -> None:
        self.check_origin(request)
        if not hmac.compare_digest(first(form, "csrf"), self.keys.csrf_token(session)):
            raise HttpRefused(
                403, "The form has expired or did not come from this site; reload it."
            )

    async def _admin(self, request: Request, view: AdminPage, action: Action) -> Response:
        found = await self.staff_session(request)
        if found is None:
            if request.url.path == PREFIX + "/admin/stats":
                return JSONResponse({"error": "sign in"}, status_code=401)
            return self._expired(request, PREFIX + "/admin/login")
        session, principal = found
        request.scope[PRINCIPAL_KEY] = principal
        if request.method == "POST":
            self.check_csrf(request, session, form_of(request))
        try:
            principal.require(action)
        except NotPermitted as exc:
            raise HttpRefused(403, str(exc)) from None
        with acting(principal.actor(client_of(request))):
            return await view(self, request, session, principal)

    def nav(self, request: Request) -> list[NavLink]:
        """The navigation links of an administrator's page: those whose page the
        principal's role may open (the same check as the page's route)."""
        principal = request.scope.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):
            return []
        return [link for link in ADMIN_NAV if principal.may(self.page_actions[link.path])]

    async def _user(self, request: Request, view: UserPage) -> Response:
        found = await self.session(request, "user")
        if found is None or found[1] is None:
            return self._expired(request, PREFIX + "/login")
        if request.method == "POST":
            self.check_csrf(request, found[0], form_of(request))
        # A change on the user's own page is recorded as made by the user themself.
        with acting(Actor(name=f"user:{found[1].uid}", source=client_of(request))):
            return await view(self, request, found[0], found[1])

    # ------------------------------------------------------------------ sign-in and out

    async def _home(self, request: Request) -> Response:
        if await self.session(request, "admin"):
            return redirect(PREFIX + "/admin/accounts")
        user = await self.session(request, "user")
        return redirect(PREFIX + "/me" if user else PREFIX + "/login")

    def login_form(self, request: Request, *, admin: bool, error: str = "") -> Response:
        value = request.cookies.get(LOGIN_COOKIE, "")
        cookies: tuple[str, ...] = ()
        if not re.fullmatch(r"[A-Za-z0-9_-]{22,64}", value):
            value = secrets.token_urlsafe(24)
            cookies = (self.cookie(request, LOGIN_COOKIE, value, max_age=3600),)
        return self.pages.render(
            request,
            "login.html",
            title="Administrator sign-in" if admin else "Sign in",
            status=400 if error else 200,
            cookies=cookies,
            error=error,
            admin=admin,
            token=self.keys.login_token(value),
        )

    def check_login_csrf(self, request: Request) -> FormData:
        form = form_of(request)
        self.check_origin(request)
        value = request.cookies.get(LOGIN_COOKIE, "")
        if not value or not hmac.compare_digest(first(form, "csrf"), self.keys.login_token(value)):
            raise HttpRefused(
                403, "The form has expired or did not come from this site; reload it."
            )
        return form

    async def _user_login(self, request: Request) -> Response:
        if request.method != "POST":
            return self.login_form(request, admin=False)
        form = self.check_login_csrf(request)
        outcome = await auth.authenticate(
            self.engine,
            first(form, "username"),
            first(form, "password"),
            client_ip=request.client.host if request.client else None,
            secured=request.url.scheme == "https",
        )
        if isinstance(outcome, Unavailable):
            return self.login_form(
                request,
                admin=False,
                error="The service is temporarily unavailable; try again.",
            )
        accepted = auth.self_service(outcome)
        if accepted is None or self.admin is None:
            return self.login_form(request, admin=False, error="invalid login")
        account = accepted.account
        refused = await staffpages.user_second_factor(
            self, account.uid, first(form, "code"), source=client_of(request)
        )
        if refused:
            return self.login_form(request, admin=False, error=refused)
        cookie = self.new_session(request, "user", account.uid, self.keys.user_tag(account))
        return redirect(PREFIX + "/me", cookies=(cookie,))

    async def _logout(self, request: Request) -> Response:
        if request.method != "POST":
            raise HttpRefused(404, "No such page.")
        session = self.session_of(request)
        if session is not None:
            self.check_csrf(request, session, form_of(request))
            self.keys.revoke(session)
        clear = self.cookie(request, SESSION_COOKIE, "", max_age=0)
        staff = session is not None and session.role in ("admin", "enrol", "bootstrap")
        login = PREFIX + ("/admin/login" if staff else "/login")
        return redirect(login + "?done=out", cookies=(clear,))


async def _parse_form(request: Request) -> FormData:
    """The url-encoded form of a POST; HttpRefused if it is of another type or unreadable."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != _FORM_TYPE:
        raise HttpRefused(415, "Forms are sent as application/x-www-form-urlencoded.")
    # Starlette reads url-encoded bytes as latin-1, so raw (not percent-encoded)
    # non-ASCII would be stored garbled: refused instead (browsers always encode).
    body = await request.body()
    if not body.isascii():
        raise HttpRefused(400, "The form could not be read.")
    try:
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except MultiPartException:  # too many fields (newer Starlette counts them here too)
        raise HttpRefused(400, "The form could not be read.") from None
    if len(form.multi_items()) > MAX_FORM_FIELDS:  # older Starlette: multipart only
        raise HttpRefused(400, "The form could not be read.")
    return form


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses a body over ``limit`` bytes (413) or a vanished client."""
    size = 0

    async def wrapped() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpRefused(400, "The client went away.")
        size += len(message.get("body", b""))
        if size > limit:
            raise HttpRefused(413, "The form is too large.")
        return message

    return wrapped
