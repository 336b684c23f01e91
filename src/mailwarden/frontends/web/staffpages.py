"""The web page's administrators, API tokens, audit log and two-factor sign-in.

What belongs here: the administrator's sign-in (name, password, TOTP code) and
the bootstrap sign-in that creates the first administrator, enrolling a second
factor (administrators must; account holders may, on their own page), the
audit log, administrator and token pages, and the code a user with a second
factor gives at sign-in. The decisions are accounts/staff.py's (and its TOTP
rules accounts/totp.py's); the role check ran before an admin page is called
(app.py's routes table), and changes are recorded there as the principal's.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import logging
from typing import TYPE_CHECKING

import markupsafe
from starlette.requests import Request
from starlette.responses import Response

from mailwarden.accounts import totp
from mailwarden.accounts.audit import Actor, acting
from mailwarden.accounts.staff import (
    ADMIN_OWNER,
    USER_OWNER,
    Enrolment,
    Principal,
    SignIn,
    Staff,
)
from mailwarden.auth.roles import ADMIN_ROLES, TOKEN_SCOPES, Action
from mailwarden.errors import AccountError, HttpRefused, NotPermitted, ProtocolError
from mailwarden.frontends.web import auth
from mailwarden.frontends.web.admin import account_link
from mailwarden.frontends.web.pages import first, form_of, redirect
from mailwarden.frontends.web.sessions import PREFIX, SESSION_COOKIE, Session
from mailwarden.model import Account
from mailwarden.protocols.staff_api import parse_limit, parse_since
from mailwarden.state.base import AuditQuery

if TYPE_CHECKING:
    from mailwarden.frontends.web.app import WebUi

log = logging.getLogger("mailwarden.web")

#: A failed administrator sign-in waits this long before its answer, on top of what
#: the guard does (it counts, bans and slows administrators' sign-ins as mail logins).
ADMIN_FAILURE_DELAY = 1.0
AUDIT_PAGE = 200
_SIGN_IN_ERRORS = {
    SignIn.INVALID: "invalid login",
    SignIn.NEED_CODE: "Enter the current code of your authenticator app, or a recovery code.",
    SignIn.LIMITED: "Too many wrong codes: wait a few minutes, then try again.",
}


def _need_staff(ui: WebUi) -> Staff:
    if ui.staff is None:
        raise HttpRefused(404, "Administrators are not enabled in this process.")
    return ui.staff


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def client_ip(request: Request) -> str | None:
    """The address the guard counts a sign-in by (None: its stand-in address)."""
    return request.client.host if request.client else None


def _when(value: float | None) -> str:
    if value is None:
        return "never"
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------------- sign-in


async def admin_login(ui: WebUi, request: Request) -> Response:
    """Name, password and code; or, while no administrator exists, the bootstrap
    name and token, which open only the page that creates the first one."""
    if request.method != "POST":
        return ui.login_form(request, admin=True)
    form = ui.check_login_csrf(request)
    staff = ui.staff
    name, password, code = first(form, "username"), first(form, "password"), first(form, "code")
    client = _client(request)
    outcome = SignIn.INVALID
    if staff is not None:
        # A recovery code used here is recorded as the administrator's.
        with acting(Actor(name=f"admin:{name}", source=client)):
            outcome = await staff.sign_in(
                name, password.encode("utf-8"), code, remote_ip=client_ip(request)
            )
    if outcome is SignIn.BOOTSTRAP:
        log.info("web: bootstrap sign-in from %s", client)
        tag = ui.keys.bootstrap_tag(ui.config)
        cookie = ui.new_session(request, "bootstrap", name, tag)
        return redirect(PREFIX + "/admin/first", cookies=(cookie,))
    if outcome in _SIGN_IN_ERRORS:
        log.info("web: failed administrator sign-in (%s) from %s", outcome.value, client)
        await asyncio.sleep(ADMIN_FAILURE_DELAY)
        return ui.login_form(request, admin=True, error=_SIGN_IN_ERRORS[outcome])
    assert staff is not None
    found = await staff.admin_principal(name)
    if found is None:  # removed in the meantime
        return ui.login_form(request, admin=True, error="invalid login")
    _, record = found
    tag = ui.keys.staff_tag(record.name, record.password, record.role)
    role = "admin" if outcome is SignIn.OK else "enrol"
    log.info("web: administrator %s signed in (%s) from %s", name, role, client)
    cookie = ui.new_session(request, role, record.name, tag)
    target = "/admin/accounts" if outcome is SignIn.OK else "/admin/enrol"
    return redirect(PREFIX + target, cookies=(cookie,))


async def first_admin(ui: WebUi, request: Request) -> Response:
    """The bootstrap session's one page: create the first administrator."""
    staff = _need_staff(ui)
    session = ui.live_session(request, "bootstrap")
    tag = ui.keys.bootstrap_tag(ui.config)
    if (
        session is None
        or not hmac.compare_digest(session.tag, tag)
        or not await staff.bootstrap_open()
    ):
        return redirect(PREFIX + "/admin/login")
    form = form_of(request)
    error = ""
    if request.method == "POST":
        ui.check_csrf(request, session, form)
        password = first(form, "password")
        if password != first(form, "password2"):
            error = "The two passwords differ."
        else:
            principal = Principal(kind="bootstrap", name="bootstrap", grant=None)
            try:
                with acting(principal.actor(_client(request))):
                    await staff.add_admin(
                        principal, first(form, "name"), password.encode(), "admin"
                    )
            except (AccountError, NotPermitted) as exc:
                error = str(exc)
            else:
                ui.keys.revoke(session)
                clear = ui.cookie(request, SESSION_COOKIE, "", max_age=0)
                return redirect(PREFIX + "/admin/login?done=first", cookies=(clear,))
    return ui.pages.render(
        request,
        "first.html",
        title="The first administrator",
        session=session,
        status=400 if error else 200,
        error=error,
        name=first(form, "name"),
    )


def _enrolment_page(
    ui: WebUi, request: Request, session: Session, enrolment: Enrolment, action: str, error: str
) -> Response:
    return ui.pages.render(
        request,
        "enrol.html",
        title="Two-factor sign-in",
        session=session,
        status=400 if error else 200,
        error=error,
        secret=enrolment.secret,
        uri=enrolment.uri,
        qr=markupsafe.Markup(enrolment.svg),  # noqa: S704 - drawn by segno from our own URI
        action=action,
    )


def _codes_page(
    ui: WebUi, request: Request, session: Session, codes: list[str], to: str
) -> Response:
    return ui.pages.render(
        request,
        "codes.html",
        title="Recovery codes",
        session=session,
        codes=codes,
        next=PREFIX + to,
    )


async def _enrolment(staff: Staff, owner: str, label: str) -> Enrolment:
    return await staff.enrolment(owner, account=label) or await staff.enrol(owner, account=label)


async def admin_enrol(ui: WebUi, request: Request) -> Response:
    """An administrator without a second factor sets one up before anything else."""
    staff = _need_staff(ui)
    found = await ui.staff_session(request, "enrol")
    if found is None:
        return redirect(PREFIX + "/admin/login")
    session, principal = found
    owner = ADMIN_OWNER + principal.name
    error = ""
    if request.method == "POST":
        ui.check_csrf(request, session, form_of(request))
        with acting(principal.actor(_client(request))):
            codes = await staff.confirm(owner, first(form_of(request), "code"))
        if codes is not None:
            ui.keys.revoke(session)
            cookie = ui.new_session(request, "admin", session.uid, session.tag)
            page = _codes_page(ui, request, session, codes, "/admin/accounts")
            page.headers.append("set-cookie", cookie)
            return page
        error = "That code is not right (or too many tries: wait a few minutes)."
    enrolment = await _enrolment(staff, owner, f"admin:{principal.name}")
    return _enrolment_page(ui, request, session, enrolment, PREFIX + "/admin/enrol", error)


async def user_second_factor(ui: WebUi, uid: str, code: str, *, source: str) -> str:
    """After a user's password was accepted: "" when no second factor is set up or
    ``code`` is right, else the message to show (the password alone opens nothing)."""
    staff = ui.staff
    if staff is None or not await staff.factor_confirmed(USER_OWNER + uid):
        return ""
    if not code:
        return "Enter the current code of your authenticator app, or a recovery code."
    with acting(Actor(name=f"user:{uid}", source=source)):
        verdict = await staff.check_code(USER_OWNER + uid, code)
    if verdict in (totp.Verdict.ACCEPTED, totp.Verdict.RECOVERY):
        return ""
    if verdict is totp.Verdict.LIMITED:
        return "Too many wrong codes: wait a few minutes, then try again."
    return "That code is not right."


# ---------------------------------------------------------------------- admin pages


async def audit(ui: WebUi, request: Request, session: Session, principal: Principal) -> Response:
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    staff = _need_staff(ui)
    q = request.query_params
    try:
        since = first(q, "since")
        query = AuditQuery(
            target=first(q, "user") or None,
            actor=first(q, "actor") or None,
            since=parse_since(since, ui.clock()) if since else None,
            limit=parse_limit(first(q, "limit") or str(AUDIT_PAGE)),
        )
    except ProtocolError as exc:
        raise HttpRefused(400, str(exc)) from None
    entries = await staff.audit.entries(query)
    return ui.pages.render(
        request,
        "audit.html",
        title="Audit log",
        session=session,
        entries=entries,
        when=_when,
        user=first(q, "user"),
        actor=first(q, "actor"),
        since=first(q, "since"),
    )


async def admins(ui: WebUi, request: Request, session: Session, principal: Principal) -> Response:
    """List administrators; an ``admin`` adds, removes, changes roles, resets factors."""
    staff = _need_staff(ui)
    form = form_of(request)
    error = notice = ""
    if request.method == "POST":
        op, name = first(form, "op"), first(form, "name")
        try:
            if op == "add":
                await staff.add_admin(
                    principal, name, first(form, "password").encode(), first(form, "role")
                )
                notice = f"Administrator {name} added; their first sign-in sets up two-factor."
            elif op == "role":
                await staff.set_role(principal, name, first(form, "role"))
                notice = f"{name} now has the {first(form, 'role')} role."
            elif op == "remove":
                await staff.remove_admin(principal, name)
                notice = f"Administrator {name} removed."
            elif op == "reset-totp":
                await staff.reset_factor(principal, ADMIN_OWNER + name)
                notice = f"Two-factor sign-in of {name} reset."
            else:
                raise HttpRefused(400, "Unknown operation.")
        except (AccountError, NotPermitted) as exc:
            error = str(exc)
    listed = [(a, await staff.factor_confirmed(ADMIN_OWNER + a.name)) for a in await staff.admins()]
    return ui.pages.render(
        request,
        "admins.html",
        title="Administrators",
        session=session,
        status=400 if error else 200,
        error=error,
        notice=notice,
        admins=listed,
        roles=[r.value for r in ADMIN_ROLES],
        may_manage=principal.may(Action.MANAGE_STAFF),
        when=_when,
    )


async def api_tokens(
    ui: WebUi, request: Request, session: Session, principal: Principal
) -> Response:
    """List tokens; an ``admin`` creates one (its value shown once) or revokes one."""
    staff = _need_staff(ui)
    form = form_of(request)
    error = notice = value = ""
    if request.method == "POST":
        op, name = first(form, "op"), first(form, "name")
        try:
            if op == "create":
                days = first(form, "days").strip()
                expires: float | None = None
                if days:
                    if not days.isdigit() or int(days) < 1:
                        raise AccountError("expiry: a whole number of days >= 1, or empty")
                    expires = ui.clock() + int(days) * 86400
                issued = await staff.create_token(
                    principal, name, first(form, "scope"), expires=expires
                )
                value = issued.value
                notice = f"Token {name} created. Copy it now: it is not shown again."
            elif op == "revoke":
                await staff.revoke_token(principal, name)
                notice = f"Token {name} revoked."
            else:
                raise HttpRefused(400, "Unknown operation.")
        except (AccountError, NotPermitted) as exc:
            error = str(exc)
    return ui.pages.render(
        request,
        "tokens.html",
        title="API tokens",
        session=session,
        status=400 if error else 200,
        error=error,
        notice=notice,
        value=value,
        tokens=await staff.tokens(),
        scopes=[s.value for s in TOKEN_SCOPES],
        may_manage=principal.may(Action.MANAGE_STAFF),
        when=_when,
    )


async def reset_user_totp(
    ui: WebUi, request: Request, session: Session, principal: Principal
) -> Response:
    """Reset an account holder's second factor (they may enrol again)."""
    if request.method != "POST":
        raise HttpRefused(404, "No such page.")
    staff = _need_staff(ui)
    uid = first(form_of(request), "uid")
    await staff.reset_factor(principal, USER_OWNER + uid)
    return redirect(account_link(uid) + "&done=totp-reset")


# ---------------------------------------------------------------------- the user's own


async def user_totp(ui: WebUi, request: Request, session: Session, account: Account) -> Response:
    """Set up two-factor sign-in for the web page, or turn it off (which needs the
    current password and a code: a session alone must not remove the factor)."""
    staff = _need_staff(ui)
    owner = USER_OWNER + account.uid
    form = form_of(request)
    error = ""
    enabled = await staff.factor_confirmed(owner)
    if request.method == "POST":
        op = first(form, "op")
        if op == "confirm" and not enabled:
            codes = await staff.confirm(owner, first(form, "code"))
            if codes is not None:
                return _codes_page(ui, request, session, codes, "/me")
            error = "That code is not right (or too many tries: wait a few minutes)."
        elif op == "off" and enabled:
            proof = await auth.confirm_password(
                ui.engine,
                account,
                first(form, "current"),
                client_ip=_client(request),
                secured=request.url.scheme == "https",
            )
            verdict = await staff.check_code(owner, first(form, "code"))
            if proof is auth.Proof.CONFIRMED and verdict in (
                totp.Verdict.ACCEPTED,
                totp.Verdict.RECOVERY,
            ):
                await staff.reset_factor(None, owner)
                return redirect(PREFIX + "/me?done=totp-off")
            error = "The password or the code is not right."
        else:
            raise HttpRefused(400, "Unknown operation.")
    if enabled:
        return ui.pages.render(
            request,
            "totp.html",
            title="Two-factor sign-in",
            session=session,
            status=400 if error else 200,
            error=error,
        )
    enrolment = await _enrolment(staff, owner, account.uid)
    return _enrolment_page(ui, request, session, enrolment, PREFIX + "/me/totp", error)
