"""The administrator's pages: accounts (search, create, edit, reset), live chart, bans.

What belongs here: reading the administrator's forms and calling the one code
path for each change, :class:`~mailwarden.accounts.edit.AccountAdmin` for
accounts and the guard for bans. Every function takes the page, the request, the
(checked) administrator session and its principal; CSRF and the role
(auth/roles.py, through the routes table of app.py) were checked before it runs,
and every change it makes is recorded in the audit log as the principal's.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailwarden.accounts.rules import generate_password
from mailwarden.accounts.staff import Principal
from mailwarden.auth.roles import APP_PASSWORDS
from mailwarden.errors import AccountError, AccountExists, AccountNotFound, HttpRefused
from mailwarden.frontends.web import accountlist
from mailwarden.frontends.web.accountform import field_errors, form_values, read_form
from mailwarden.frontends.web.accountlist import PAGE_SIZES, ListQuery, Window
from mailwarden.frontends.web.pages import first, form_of, redirect
from mailwarden.frontends.web.selfservice import APP_PASSWORD_SERVICES, app_password_form
from mailwarden.frontends.web.sessions import PREFIX, Session
from mailwarden.loginseries import OUTCOMES
from mailwarden.model import Account, AccountStatus
from mailwarden.ports import AccountEditor

if TYPE_CHECKING:
    from mailwarden.frontends.web.app import WebUi

log = logging.getLogger("mailwarden.web")

#: Services shown as switches on the edit page besides those the account already has.
KNOWN_SERVICES = ("imap", "pop3", "smtp", "submission", "sieve", "lmtp", "web")


def account_link(uid: str) -> str:
    return f"{PREFIX}/admin/account?uid={quote(uid, safe='')}"


def _need_admin(ui: WebUi) -> AccountEditor:
    if ui.admin is None:
        raise HttpRefused(404, "Account administration is not enabled in this process.")
    return ui.admin


async def accounts(ui: WebUi, request: Request, session: Session, principal: Principal) -> Response:
    """The account list: the matches of a ``mailwarden user list`` pattern, streamed
    into a bounded window that sorts and pages them (accountlist.py says why)."""
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    admin = _need_admin(ui)
    query = ListQuery.of(request.query_params)
    window = Window(query)

    async def read() -> None:
        async for item in admin.listing(query.pattern):
            if not window.add(item):
                break

    # A task of its own, so that the time limit cancels the read and nothing else.
    reading = asyncio.ensure_future(read())
    try:
        done, _ = await asyncio.wait({reading}, timeout=accountlist.SCAN_SECONDS)
    finally:
        if not reading.done():
            reading.cancel()
    if reading in done:
        reading.result()  # the read's own error (the directory down: the 503 page)
    else:
        await asyncio.wait({reading})  # its cancellation has run
        window.stopped()  # what was read so far; the page says so
    return ui.pages.render(
        request,
        "accounts.html",
        title="Accounts",
        session=session,
        listed=window.page(),
        max_scan=window.max_scan,
        scan_seconds=accountlist.SCAN_SECONDS,
        page_sizes=PAGE_SIZES,
        account_link=account_link,
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
    if not post:
        return _edit_form(ui, request, account, session, principal)

    def typed(name: str) -> str | None:
        return first(form, name) if name in form else None

    posted = read_form(typed, account, _service_names(account))
    errors = {**field_errors(account, posted.changes), **posted.errors}
    # Above the form too: each message names its field, and none is lost.
    error = "Not saved: " + "; ".join(errors.values()) if errors else ""
    if not errors:
        try:
            await admin.patch(account.uid, posted.changes)
        except AccountError as exc:
            error = str(exc)
        else:
            log.info("web: administrator changed account %s", account.uid)
            return redirect(account_link(account.uid) + "&done=saved")
    # Refused: the form again, with what was typed and each message by its box.
    return _edit_form(
        ui, request, account, session, principal, error=error, typed=posted.values, errors=errors
    )


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
    typed: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> Response:
    services = _service_names(account)
    return ui.pages.render(
        request,
        "account.html",
        title=f"Account {account.uid}",
        session=session,
        status=400 if error else 200,
        notice=notice,
        error=error,
        account=account,
        values={**form_values(account, services), **(typed or {})},
        # A box without a refusal shows none ('' for any name the template asks).
        errors=defaultdict(str, errors or {}),
        statuses=list(AccountStatus),
        services=services,
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
    """Login decisions so far by result, and the last hour per 10 s by service and
    outcome (loginseries.py), counted by the process that answers (docs/web.md)."""
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    counts = dict.fromkeys(OUTCOMES, 0)
    series: dict[str, object] | None = None
    if ui.metrics is not None:
        for result, count in ui.metrics.auth_results().items():
            if result in counts:
                counts[result] += count
        snapshot = ui.metrics.series.snapshot()
        series = {
            "start": snapshot.start,
            "step": snapshot.step,
            "buckets": snapshot.buckets,
            "outcomes": list(OUTCOMES),
            "counts": snapshot.counts,
        }
    body = {
        "time": ui.clock(),
        "results": counts,
        "available": ui.metrics is not None,
        "series": series,
        "process": os.getpid(),
    }
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
