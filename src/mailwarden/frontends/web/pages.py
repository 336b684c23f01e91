"""Rendering: the Jinja2 templates in ``mailwarden/web/templates``, static files, redirects.

What belongs here: turning values into responses. Templates are rendered with
autoescape on, so every value is HTML-escaped (quotes too: values go into
attributes) unless a template marks it otherwise, which none does. A page never
carries a password hash, a trace or a cause.
"""

from __future__ import annotations

import datetime
import html
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
import markupsafe
from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from mailwarden.errors import HttpRefused
from mailwarden.frontends.web.sessions import PREFIX, Session

if TYPE_CHECKING:
    from mailwarden.frontends.web.app import WebUi

_STATIC = {"style.css": "text/css; charset=utf-8", "chart.js": "text/javascript; charset=utf-8"}
_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Changed meanwhile",
    413: "Too large",
    415: "Unsupported form",
    503: "Temporarily unavailable",
}
NOTICES = {
    "saved": "Saved.",
    "created": "Account created.",
    "password": "Your password was changed.",
    "secured": "Your password was changed and every other session was signed out.",
    "app-password-revoked": "The app password was revoked.",
    "ssh": "SSH keys saved.",
    "pgp": "OpenPGP key saved.",
    "profile": "Profile saved.",
    "unblocked": "Ban lifted.",
    "first": "The first administrator exists: sign in with that name.",
    "totp-reset": "Two-factor sign-in was reset.",
    "totp-off": "Two-factor sign-in is off.",
    "out": "You are signed out.",
    "expired": "Your session has ended; please sign in again.",
}


#: Where the request boundary keeps the form it read before routing.
FORM_KEY = "mailwarden.web.form"
#: Where an administrator's request keeps its principal (the navigation asks it).
PRINCIPAL_KEY = "mailwarden.web.principal"


@dataclass(frozen=True, slots=True, kw_only=True)
class NavLink:
    """One link of the administrators' navigation (``path`` under ``/ui``)."""

    path: str
    label: str


#: The administrators' navigation, in order; each link is shown only to a role that
#: may open its page (WebUi.nav asks the role check of that page's route).
ADMIN_NAV = (
    NavLink(path="/admin/accounts", label="Accounts"),
    NavLink(path="/admin/new", label="New account"),
    NavLink(path="/admin/chart", label="Live logins"),
    NavLink(path="/admin/bans", label="Banned sources"),
    NavLink(path="/admin/audit", label="Audit log"),
    NavLink(path="/admin/admins", label="Administrators"),
    NavLink(path="/admin/tokens", label="API tokens"),
)


def form_of(request: Request) -> FormData:
    """The form of this request (read by the boundary before routing; empty for a GET)."""
    form = request.scope.get(FORM_KEY)
    return form if isinstance(form, FormData) else FormData()


def first(values: FormData | QueryParams, name: str) -> str:
    """The first value of ``name`` in a form or query string ('' if absent)."""
    found = values.getlist(name)
    return found[0] if found and isinstance(found[0], str) else ""


def _resource(name: str) -> bytes:
    return resources.files("mailwarden").joinpath("web", name).read_bytes()


def static_file(name: str) -> Response:
    """One of the two static files (a fixed list: nothing else under web/ is served)."""
    ctype = _STATIC.get(name)
    if ctype is None:
        raise HttpRefused(404, "No such file.")
    return Response(_resource(name), media_type=ctype, headers={"cache-control": "max-age=300"})


def redirect(location: str, *, cookies: tuple[str, ...] = ()) -> Response:
    """A 303 to ``location`` (a path of this site), setting ``cookies``."""
    response = Response(b"", status_code=303, media_type="text/plain; charset=utf-8")
    response.headers["location"] = location
    for cookie in cookies:
        response.headers.append("set-cookie", cookie)
    return response


def _escaped(value: object) -> object:
    """Every value escaped as :func:`html.escape` does (``&quot;``, ``&#x27;``).

    Autoescape would escape it anyway (as ``&#34;``); escaping here keeps the
    page byte for byte what it was before templates, and markup made by the
    templates' own macros passes unchanged.
    """
    if hasattr(value, "__html__"):
        return value
    return markupsafe.Markup(html.escape(str(value), quote=True))  # noqa: S704 - escaped here


def utc(seconds: int) -> str:
    """Unix seconds as the pages show a time (``2027-06-30 23:59 UTC``)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


class Pages:
    """The templates of one web page (the session decides the navigation)."""

    def __init__(self, ui: WebUi) -> None:
        self.ui = ui
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("mailwarden", "web/templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_escaped,
        )
        self.env.globals["prefix"] = PREFIX
        self.env.filters["utc"] = utc

    def render(
        self,
        request: Request | None,
        template: str,
        *,
        title: str,
        session: Session | None = None,
        status: int = 200,
        cookies: tuple[str, ...] = (),
        notice: str = "",
        **values: Any,
    ) -> Response:
        """The page ``template`` (extending layout.html) with ``values``."""
        if not notice and request is not None:
            notice = NOTICES.get(first(request.query_params, "done"), "")
        csrf = self.ui.keys.csrf_token(session) if session is not None else ""
        nav = self.ui.nav(request) if request is not None else []
        text = self.env.get_template(template).render(
            title=title, session=session, csrf=csrf, notice=notice, nav=nav, **values
        )
        response = HTMLResponse(text, status_code=status)
        for cookie in cookies:
            response.headers.append("set-cookie", cookie)
        return response

    def error(self, status: int, message: str) -> Response:
        """The error page: a title for the status and the message, nothing more."""
        title = _TITLES.get(status, "Error")
        return self.render(None, "error.html", title=title, status=status, error=message)
