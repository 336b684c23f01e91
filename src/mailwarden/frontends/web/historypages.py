"""The login history on the web page (docs/history.md): the user's own recent logins
with the "This wasn't me" button, and an administrator's view of any account's.

What belongs here: reading the history through the engine's recorder and the
"This wasn't me" form. What securing an account does is
:meth:`~mailwarden.accounts.edit.AccountAdmin.secure_account`'s (one call: new
password, app passwords revoked if asked, cached logins forgotten on every node,
one audit entry). The rules of the form, and why:

* **A new password is required**, typed twice and checked by the rules of the
  password form (selfservice.new_password): whoever logged in knows the old one.
* **The current password too**, as for every change that hands over the account:
  a stolen session alone must not be able to lock the owner out.
* **Every other web session ends** (sessions are bound to the stored password, so
  on every node); this browser gets a fresh session, as after a password change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from mailwarden.accounts.staff import Principal
from mailwarden.errors import AccountError, AccountNotFound, HttpRefused, TemporaryFailure
from mailwarden.frontends.web.pages import first, form_of, redirect
from mailwarden.frontends.web.selfservice import need_admin, new_password
from mailwarden.frontends.web.sessions import PREFIX, Session
from mailwarden.history.base import LoginEvent
from mailwarden.model import Account

if TYPE_CHECKING:
    from mailwarden.frontends.web.app import WebUi

log = logging.getLogger("mailwarden.web")

#: Logins a page lists at most.
SHOWN = 50
OWN_PAGE = PREFIX + "/me/history"


async def _logins(ui: WebUi, uid: str) -> list[LoginEvent] | str | None:
    """``uid``'s recent logins; None when the site keeps no history; why not, when
    its store cannot answer now (the page, and its button, still work)."""
    recorder = ui.engine.history
    if recorder is None:
        return None
    try:
        return await recorder.recent(uid, limit=SHOWN)
    except TemporaryFailure as exc:
        log.warning("web: the login history of %s cannot be read: %s", uid, exc)
        return "The login history cannot be read just now; try again later."


async def _own_page(
    ui: WebUi,
    request: Request,
    session: Session,
    account: Account,
    *,
    error: str = "",
    status: int = 200,
) -> Response:
    return ui.pages.render(
        request,
        "history.html",
        title="Your recent logins",
        session=session,
        status=status,
        account=account,
        logins=await _logins(ui, account.uid),
        own=True,
        error=error,
        min_length=ui.config.min_password_length,
    )


async def my_history(ui: WebUi, request: Request, session: Session, account: Account) -> Response:
    """``GET /ui/me/history``: the user's own recent logins and the button."""
    need_admin(ui)
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    return await _own_page(ui, request, session, account)


async def not_me(ui: WebUi, request: Request, session: Session, account: Account) -> Response:
    """``POST /ui/me/not-me``: a login was not the user's (module docstring)."""
    admin = need_admin(ui)
    if request.method != "POST":
        raise HttpRefused(404, "No such page.")
    form = form_of(request)
    new, problem = await new_password(ui, request, account)
    if problem is None:
        try:
            fresh = await admin.secure_account(
                account.uid,
                new.encode("utf-8"),
                revoke_app_passwords=bool(first(form, "revoke_app_passwords")),
            )
        except AccountError as exc:
            problem = str(exc)
    if problem is not None:
        return await _own_page(ui, request, session, account, error=problem, status=400)
    log.warning("web: %s reported a login that was not theirs; account secured", account.uid)
    cookie = ui.new_session(request, "user", fresh.uid, ui.keys.user_tag(fresh))
    ui.keys.revoke(session)
    return redirect(OWN_PAGE + "?done=secured", cookies=(cookie,))


async def account_history(
    ui: WebUi, request: Request, session: Session, principal: Principal
) -> Response:
    """``GET /ui/admin/history?uid=UID``: any account's recent logins (the
    ``read-history`` action: administrators and the helpdesk)."""
    admin = need_admin(ui)
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    try:
        account = await admin.show(first(request.query_params, "uid"))
    except AccountNotFound:
        raise HttpRefused(404, "No such account.") from None
    return ui.pages.render(
        request,
        "history.html",
        title=f"Recent logins of {account.uid}",
        session=session,
        account=account,
        logins=await _logins(ui, account.uid),
        own=False,
        error="",
    )
