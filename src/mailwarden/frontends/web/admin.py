"""The administrator's pages: accounts (search, create, edit, reset), live chart, bans.

What belongs here: reading the administrator's forms and calling the one code
path for each change, :class:`~mailwarden.accounts.edit.AccountAdmin` for
accounts and the guard for bans. Every function takes the page, the request, the
(checked) administrator session and its principal; CSRF and the role
(auth/roles.py, through the routes table of app.py) were checked before it runs,
and every change it makes is recorded in the audit log as the principal's.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailwarden.accounts.rules import generate_password
from mailwarden.accounts.staff import Principal
from mailwarden.auth.roles import APP_PASSWORDS
from mailwarden.errors import AccountError, AccountExists, AccountNotFound, HttpRefused
from mailwarden.frontends.web.pages import first, form_of, redirect
from mailwarden.frontends.web.selfservice import APP_PASSWORD_SERVICES, app_password_form
from mailwarden.frontends.web.sessions import PREFIX, Session
from mailwarden.model import Account, AccountStatus
from mailwarden.ports import AccountEditor

if TYPE_CHECKING:
    from mailwarden.frontends.web.app import WebUi

log = logging.getLogger("mailwarden.web")

#: Services shown as switches on the edit page besides those the account already has.
KNOWN_SERVICES = ("imap", "pop3", "smtp", "submission", "sieve", "lmtp", "web")
SEARCH_LIMIT = 200
_RESULTS = ("accepted", "denied", "blocked", "unavailable")


def account_link(uid: str) -> str:
    return f"{PREFIX}/admin/account?uid={quote(uid, safe='')}"


def _services_off(account: Account) -> str:
    return ", ".join(sorted(s for s, on in account.services.items() if not on))


def _need_admin(ui: WebUi) -> AccountEditor:
    if ui.admin is None:
        raise HttpRefused(404, "Account administration is not enabled in this process.")
    return ui.admin


async def accounts(ui: WebUi, request: Request, session: Session, principal: Principal) -> Response:
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    admin = _need_admin(ui)
    query = first(request.query_params, "q").strip()
    pattern = query if any(c in query for c in "*?") else f"*{query}*" if query else "*"
    found = await admin.search(pattern, limit=SEARCH_LIMIT)
    return ui.pages.render(
        request,
        "accounts.html",
        title="Accounts",
        session=session,
        query=query,
        accounts=found,
        limit=SEARCH_LIMIT,
        account_link=account_link,
        services_off=_services_off,
    )


async def new_account(
    ui: WebUi, request: Request, session: Session, principal: Principal
) -> Response:
    admin = _need_admin(ui)
    form = form_of(request)
    error = ""
    if request.method == "POST":
        uid = first(form, "uid").strip()
        mail = first(form, "mail").strip() or (uid if "@" in uid else "")
        password = first(form, "password")
        generated = None if password else generate_password()
        try:
            account = await admin.create(
                Account(uid=uid),
                password=generated or password.encode("utf-8"),
                changes={"mail": mail or None},
            )
        except (AccountExists, AccountError) as exc:
            error = str(exc)
        else:
            log.info("web: administrator created account %s", account.uid)
            return ui.pages.render(
                request,
                "created.html",
                title="Account created",
                session=session,
                notice="Account created.",
                account=account,
                generated=generated.decode() if generated else "",
                account_link=account_link,
            )
    return ui.pages.render(
        request,
        "new.html",
        title="New account",
        session=session,
        status=400 if error else 200,
        error=error,
        uid=first(form, "uid"),
        mail=first(form, "mail"),
    )


async def edit_account(
    ui: WebUi, request: Request, session: Session, principal: Principal
) -> Response:
    admin = _need_admin(ui)
    form = form_of(request)
    post = request.method == "POST"
    uid = first(form, "uid") if post else first(request.query_params, "uid")
    try:
        account = await admin.show(uid)
    except AccountNotFound:
        raise HttpRefused(404, "No such account.") from None
    error = ""
    if post:

        def f(name: str) -> str:
            return first(form, name)

        services = {name: f"service.{name}" in form for name in _service_names(account)}
        changes: dict[str, object] = {
            "mail": f("mail").strip() or None,
            "alternate_addresses": [a for a in re.split(r"[\s,]+", f("alternate_addresses")) if a],
            "home": f("home").strip() or None,
            "mail_location": f("mail_location").strip() or None,
            "mail_host": f("mail_host").strip() or None,
            "quota_bytes": f("quota_bytes").strip() or None,
            "status": f("status"),
            "services": services,
            "app_passwords_only": "app_passwords_only" in form,
        }
        try:
            await admin.patch(account.uid, changes)
        except AccountError as exc:
            error = str(exc)
        else:
            log.info("web: administrator changed account %s", account.uid)
            return redirect(account_link(account.uid) + "&done=saved")
    return _edit_form(ui, request, account, session, principal, error=error)


def _service_names(account: Account) -> list[str]:
    return sorted({*KNOWN_SERVICES, *account.services})


def _edit_form(
    ui: WebUi,
    request: Request,
    account: Account,
    session: Session,
    principal: Principal,
    *,
    error: str = "",
    notice: str = "",
    generated: bytes | None = None,
) -> Response:
    return ui.pages.render(
        request,
        "account.html",
        title=f"Account {account.uid}",
        session=session,
        status=400 if error else 200,
        notice=notice,
        error=error,
        account=account,
        statuses=list(AccountStatus),
        services=_service_names(account),
        generated=generated.decode() if generated else "",
        app_services=APP_PASSWORD_SERVICES,
        may_edit=principal.may(APP_PASSWORDS),
    )


async def reset_password(
    ui: WebUi, request: Request, session: Session, principal: Principal
) -> Response:
    if request.method != "POST":
        raise HttpRefused(404, "No such page.")
    admin = _need_admin(ui)
    uid = first(form_of(request), "uid")
    try:
        generated = await admin.set_password(uid, None)
        account = await admin.show(uid)
    except AccountNotFound:
        raise HttpRefused(404, "No such account.") from None
    log.info("web: administrator reset the password of %s", account.uid)
    return _edit_form(
        ui,
        request,
        account,
        session,
        principal,
        generated=generated,
        notice="A new password was set.",
    )


async def add_app_password(
    ui: WebUi, request: Request, session: Session, principal: Principal
) -> Response:
    """Make an app password for the account and show its value, this once. No
    current password here: the role (APP_PASSWORDS, as on the admin API) decides."""
    if request.method != "POST":
        raise HttpRefused(404, "No such page.")
    admin = _need_admin(ui)
    form = form_of(request)
    account = await _shown(admin, first(form, "uid"))
    try:
        want = app_password_form(form)
        new = await admin.add_app_password(
            account.uid, name=want.name, services=want.services, expires=want.expires
        )
    except AccountError as exc:
        return _edit_form(ui, request, account, session, principal, error=str(exc))
    log.info(
        "web: %s made app password %s of %s", principal.label, new.app_password.id, account.uid
    )
    return ui.pages.render(
        request,
        "app-password.html",
        title="New app password",
        session=session,
        app=new.app_password,
        value=new.value,
        owner=account.uid,
        back=account_link(account.uid),
    )


async def revoke_app_password(
    ui: WebUi, request: Request, session: Session, principal: Principal
) -> Response:
    if request.method != "POST":
        raise HttpRefused(404, "No such page.")
    admin = _need_admin(ui)
    form = form_of(request)
    uid, which = first(form, "uid"), first(form, "id")
    try:
        await admin.revoke_app_password(uid, which)
    except AccountNotFound:
        # Gone already (another tab, the user): the same result, if the account exists.
        await _shown(admin, uid)
    log.info("web: %s revoked app password %s of %s", principal.label, which, uid)
    return redirect(account_link(uid) + "&done=app-password-revoked")


async def _shown(admin: AccountEditor, uid: str) -> Account:
    try:
        return await admin.show(uid)
    except AccountNotFound:
        raise HttpRefused(404, "No such account.") from None


async def chart(ui: WebUi, request: Request, session: Session, principal: Principal) -> Response:
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    return ui.pages.render(request, "chart.html", title="Live logins", session=session)


async def stats(ui: WebUi, request: Request, session: Session, principal: Principal) -> Response:
    """Login decisions so far by result (the chart turns two of these into a rate)."""
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    counts = dict.fromkeys(_RESULTS, 0)
    if ui.metrics is not None:
        for result, count in ui.metrics.auth_results().items():
            if result in counts:
                counts[result] += count
    body = {"time": ui.clock(), "results": counts, "available": ui.metrics is not None}
    return JSONResponse(body)


async def bans(ui: WebUi, request: Request, session: Session, principal: Principal) -> Response:
    found = await ui.engine.guard.describe_bans()
    return ui.pages.render(
        request, "bans.html", title="Banned sources", session=session, bans=found
    )


async def unblock(ui: WebUi, request: Request, session: Session, principal: Principal) -> Response:
    if request.method != "POST":
        raise HttpRefused(404, "No such page.")
    target = first(form_of(request), "target")
    if not target:
        raise HttpRefused(400, "Nothing to unblock.")
    lifted = await ui.engine.guard.unblock(None if target == "*" else target)
    if ui.staff is not None:
        await ui.staff.audit.record("ban.unblock", target, ("ban",))
    log.info("web: %s unblocked %s (%d ban(s))", principal.label, target, lifted)
    return redirect(PREFIX + "/admin/bans?done=unblocked")
