"""The user's own page: password, app passwords, SSH keys, OpenPGP key, profile.

What belongs here: reading the user's forms and turning them into structured
edits under the rules the mail gateway uses too (``accounts/profile.py``,
``accounts/sshkeys.py``; the OpenPGP key is read by GnuPG in
``accounts/openpgp.py``), then storing them through
:class:`~mailwarden.accounts.edit.AccountAdmin`. A change that hands over the
account needs the current password again (``auth.py`` says why): a new app password
is one (it opens the mailbox); revoking one is not (it only takes access away).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from mailwarden.accounts.apppasswords import parse_expiry
from mailwarden.accounts.openpgp import import_public_key, public_key_fingerprint
from mailwarden.accounts.profile import ChangePolicy, edit_profile
from mailwarden.accounts.sshkeys import key_set
from mailwarden.errors import (
    AccountError,
    AccountNotFound,
    FieldError,
    HttpRefused,
    TemporaryFailure,
)
from mailwarden.frontends.web import auth
from mailwarden.frontends.web.pages import first, form_of, redirect
from mailwarden.frontends.web.sessions import PREFIX, Session
from mailwarden.model import Account
from mailwarden.ports import AccountEditor
from mailwarden.schemes.common import check_password

if TYPE_CHECKING:
    from mailwarden.frontends.web.app import WebUi

log = logging.getLogger("mailwarden.web")

WRONG_CURRENT = "The current password is not right."
#: The services the page offers to restrict an app password to (none ticked: all mail).
APP_PASSWORD_SERVICES = ("imap", "pop3", "smtp", "submission", "sieve")

# The mail gateway's field names (``[mailgate] fields``) -> Profile attribute and label.
PROFILE_FORM: dict[str, tuple[str, str]] = {
    "c": ("c", "Country (two letters)"),
    "l": ("l", "Locality"),
    "telephonenumber": ("telephone_number", "Telephone"),
    "facsimiletelephonenumber": ("facsimile_telephone_number", "Fax"),
    "postaladdress": ("postal_address", "Postal address"),
    "postalcode": ("postal_code", "Postal code"),
    "loginshell": ("login_shell", "Login shell"),
    "emailforward": ("email_forward", "Forward mail to"),
    "ircnick": ("irc_nick", "IRC nick"),
    "onvacation": ("on_vacation", "Vacation message"),
    "labeledurl": ("labeled_uri", "Home page (URL)"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPasswordForm:
    """What the form for a new app password asks for (the user's own page and an
    administrator's account page read it alike)."""

    name: str
    services: list[str]
    expires: int | None


def app_password_form(form: FormData) -> AppPasswordForm:
    """The app password ``form`` asks for; AccountError for an expiry that is no date
    (the other rules are accounts/apppasswords.py's, applied when it is made)."""
    expiry = first(form, "expires").strip()
    return AppPasswordForm(
        name=first(form, "name"),
        services=[name for name in APP_PASSWORD_SERVICES if first(form, f"service.{name}")],
        expires=parse_expiry(expiry) if expiry else None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FormField:
    """One profile box on the page (``options`` makes it a drop-down)."""

    seed: str
    label: str
    value: str
    options: tuple[str, ...] | None = None


def password_problem(new: str, *, old: str, account: Account, min_length: int) -> str | None:
    """Why ``new`` is not acceptable as the account's password, or None."""
    if len(new) < min_length:
        return f"The new password needs at least {min_length} characters."
    try:
        check_password(new.encode("utf-8"))
    except ValueError as exc:
        return f"The new password is not possible: {exc}."
    if new == old:
        return "The new password must differ from the current one."
    lowered = new.casefold()
    names = {name.casefold() for name in account.logins()}
    names |= {name.partition("@")[0] for name in names}
    if lowered in names:
        return "The new password must differ from your login name."
    return None


def _offered(ui: WebUi) -> list[str]:
    """The profile fields this site lets users change, in the config's order."""
    return [f.lower() for f in ui.engine.config.mailgate.fields if f.lower() in PROFILE_FORM]


def need_admin(ui: WebUi) -> AccountEditor:
    """The account editor, or 404 where this process administers no accounts."""
    if ui.admin is None:
        raise HttpRefused(404, "Account administration is not enabled in this process.")
    return ui.admin


def _page(
    ui: WebUi,
    request: Request,
    session: Session,
    account: Account,
    *,
    error: str = "",
    section: str = "",
    status: int = 200,
) -> Response:
    profile = account.profile.as_dict()
    shells = ("", *ui.engine.config.mailgate.login_shells)
    fields = [
        FormField(
            seed=seed,
            label=PROFILE_FORM[seed][1],
            value=str(profile.get(PROFILE_FORM[seed][0], "")),
            options=shells if seed == "loginshell" else None,
        )
        for seed in _offered(ui)
    ]
    return ui.pages.render(
        request,
        "me.html",
        title="Your account",
        session=session,
        status=status,
        account=account,
        error=error,
        section=section,
        min_length=ui.config.min_password_length,
        app_services=APP_PASSWORD_SERVICES,
        fields=fields,
        confirmed=any(f.seed in auth.CONFIRMED_PROFILE_FIELDS for f in fields),
    )


async def _proven(ui: WebUi, request: Request, account: Account) -> bool:
    """Whether the form's ``current`` field is the account's current password."""
    proof = await auth.confirm_password(
        ui.engine,
        account,
        first(form_of(request), "current"),
        client_ip=request.client.host if request.client else None,
        secured=request.url.scheme == "https",
    )
    return proof is auth.Proof.CONFIRMED


async def new_password(ui: WebUi, request: Request, account: Account) -> tuple[str, str | None]:
    """The form's new password (fields ``new`` and ``repeat``, proven by ``current``)
    and why it is refused (None: accepted): the one rule of every page that sets the
    account's password from its owner's session (a stolen session alone cannot)."""
    form = form_of(request)
    current, new = first(form, "current"), first(form, "new")
    if new != first(form, "repeat"):
        return new, "The two new passwords differ."
    problem = password_problem(
        new, old=current, account=account, min_length=ui.config.min_password_length
    )
    if problem is None and not await _proven(ui, request, account):
        problem = WRONG_CURRENT
    return new, problem


def _post_only(request: Request) -> None:
    if request.method != "POST":
        raise HttpRefused(404, "No such page.")


async def me(ui: WebUi, request: Request, session: Session, account: Account) -> Response:
    need_admin(ui)
    if request.method == "POST":
        raise HttpRefused(404, "No such page.")
    return _page(ui, request, session, account)


async def change_password(
    ui: WebUi, request: Request, session: Session, account: Account
) -> Response:
    admin = need_admin(ui)
    _post_only(request)
    new, problem = await new_password(ui, request, account)
    if problem is not None:
        return _page(ui, request, session, account, error=problem, section="password", status=400)
    await admin.set_password(account.uid, new.encode("utf-8"))
    fresh = await admin.show(account.uid)
    log.info("web: %s changed their password", account.uid)
    cookie = ui.new_session(request, "user", fresh.uid, ui.keys.user_tag(fresh))
    ui.keys.revoke(session)
    return redirect(PREFIX + "/me?done=password", cookies=(cookie,))


async def set_ssh_keys(ui: WebUi, request: Request, session: Session, account: Account) -> Response:
    admin = need_admin(ui)
    _post_only(request)
    cfg = ui.engine.config.mailgate
    problem = None
    try:
        lines = key_set(
            first(form_of(request), "keys").splitlines(),
            blocklist=cfg.ssh_key_blocklist,
            max_keys=cfg.max_ssh_keys,
        )
    except FieldError as exc:
        problem = str(exc)
    if problem is None and not await _proven(ui, request, account):
        problem = WRONG_CURRENT
    if problem is None:
        try:
            await admin.apply(account.uid, lambda a: dataclasses.replace(a, ssh_keys=lines))
        except AccountError as exc:
            problem = str(exc)
    if problem is not None:
        return _page(ui, request, session, account, error=problem, section="ssh", status=400)
    log.info("web: %s stored %d SSH key(s)", account.uid, len(lines))
    return redirect(PREFIX + "/me?done=ssh")


async def set_pgp_key(ui: WebUi, request: Request, session: Session, account: Account) -> Response:
    admin = need_admin(ui)
    _post_only(request)
    cfg = ui.engine.config.mailgate
    armored = first(form_of(request), "key")

    def refused(message: str) -> Response:
        return _page(ui, request, session, account, error=message, section="pgp", status=400)

    try:
        fingerprint = await asyncio.to_thread(
            public_key_fingerprint, armored, gpg_binary=cfg.gpg_binary
        )
        if not await _proven(ui, request, account):
            return refused(WRONG_CURRENT)
        home = ui.base / cfg.gnupg_home
        # The gateway trusts exactly the keys in its keyring: put this one there.
        if home.is_dir():
            imported = await asyncio.to_thread(
                import_public_key, str(home), armored, gpg_binary=cfg.gpg_binary
            )
            if fingerprint not in imported:
                return refused("GnuPG did not accept this key.")
    except FieldError as exc:
        return refused(str(exc))
    except OSError as exc:
        log.warning("web: cannot run gpg: %s", exc)
        raise TemporaryFailure("gpg did not run") from exc
    await admin.apply(account.uid, lambda a: dataclasses.replace(a, pgp_fingerprint=fingerprint))
    log.info("web: %s set OpenPGP key %s", account.uid, fingerprint)
    return redirect(PREFIX + "/me?done=pgp")


async def set_profile(ui: WebUi, request: Request, session: Session, account: Account) -> Response:
    admin = need_admin(ui)
    _post_only(request)
    form = form_of(request)
    current = account.profile.as_dict()
    edits: dict[str, str | None] = {}
    for seed in _offered(ui):
        attr, label = PROFILE_FORM[seed]
        value = first(form, f"profile.{seed}").strip()
        if any(c in value for c in "\r\n"):
            return _page(
                ui,
                request,
                session,
                account,
                section="profile",
                status=400,
                error=f"{label}: one line only.",
            )
        if value and value != current.get(attr):
            edits[seed] = value
        elif not value and attr in current:
            edits[seed] = None
    if not edits:
        return redirect(PREFIX + "/me?done=profile")
    # The mail gateway's own rules, all or nothing.
    policy = ChangePolicy.from_config(ui.engine.config.mailgate)
    try:
        profile = edit_profile(account, edits, policy)
    except FieldError as exc:
        return _page(ui, request, session, account, section="profile", status=400, error=str(exc))
    if edits.keys() & auth.CONFIRMED_PROFILE_FIELDS and not await _proven(ui, request, account):
        return _page(
            ui, request, session, account, section="profile", status=400, error=WRONG_CURRENT
        )
    await admin.apply(account.uid, lambda a: dataclasses.replace(a, profile=profile))
    log.info("web: %s changed their profile", account.uid)
    return redirect(PREFIX + "/me?done=profile")


async def add_app_password(
    ui: WebUi, request: Request, session: Session, account: Account
) -> Response:
    """Make an app password and show its value, this once (the page is not cached)."""
    admin = need_admin(ui)
    _post_only(request)
    problem = None
    try:
        want = app_password_form(form_of(request))
    except AccountError as exc:
        problem = str(exc)
    if problem is None and not await _proven(ui, request, account):
        problem = WRONG_CURRENT
    if problem is None:
        try:
            new = await admin.add_app_password(
                account.uid, name=want.name, services=want.services, expires=want.expires
            )
        except AccountError as exc:
            problem = str(exc)
    if problem is not None:
        return _page(ui, request, session, account, error=problem, section="apps", status=400)
    log.info("web: %s made app password %s", account.uid, new.app_password.id)
    return ui.pages.render(
        request,
        "app-password.html",
        title="New app password",
        session=session,
        app=new.app_password,
        value=new.value,
        owner=None,
        back=PREFIX + "/me",
    )


async def revoke_app_password(
    ui: WebUi, request: Request, session: Session, account: Account
) -> Response:
    admin = need_admin(ui)
    _post_only(request)
    which = first(form_of(request), "id")
    # Revoked already (another tab, an administrator): the same result.
    with contextlib.suppress(AccountNotFound):
        await admin.revoke_app_password(account.uid, which)
    log.info("web: %s revoked app password %s", account.uid, which)
    return redirect(PREFIX + "/me?done=app-password-revoked")
