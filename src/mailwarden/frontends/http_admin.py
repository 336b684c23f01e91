"""The admin API's routes (``/api/v1/accounts``, ``/audit``, ``/admins``, ``/tokens``,
the brute-force and cache routes' authorisation): who asks, and whether they may.

What belongs here: turning ``Authorization: Bearer ...`` into a
:class:`~mailwarden.accounts.staff.Principal` (a named API token, or the bootstrap
token while no administrator exists), the one role check per route
(:meth:`Principal.require`, auth/roles.py decides), making the principal the
author of every change the request makes (:func:`~mailwarden.accounts.audit.acting`),
and the calls into AccountAdmin and Staff. Request bodies and replies are
protocols/admin_api.py's and protocols/staff_api.py's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mailwarden.accounts.audit import acting
from mailwarden.accounts.rules import generate_password
from mailwarden.accounts.staff import Principal, Staff
from mailwarden.auth.engine import Engine
from mailwarden.auth.roles import APP_PASSWORDS, Action
from mailwarden.config import HttpConfig
from mailwarden.errors import (
    AccountChanged,
    AccountError,
    AccountExists,
    AccountNotFound,
    NotPermitted,
    TemporaryFailure,
)
from mailwarden.frontends.asgi import Receive, Scope
from mailwarden.frontends.httpconn import read_body
from mailwarden.ports import AccountEditor
from mailwarden.protocols import admin_api, staff_api
from mailwarden.protocols import nauthilus as proto
from mailwarden.protocols.http_api import Reply

log = logging.getLogger("mailwarden.http")

_ACCOUNT_ACTIONS = {
    "GET": Action.READ,
    "POST": Action.EDIT_ACCOUNT,
    "PATCH": Action.EDIT_ACCOUNT,
    "DELETE": Action.DELETE_ACCOUNT,
    "PUT": Action.RESET_PASSWORD,
}


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def unauthorised() -> Reply:
    return proto.error_reply(401, "valid bearer token required", challenge="Bearer")


class AdminApi:
    """The admin routes of one HttpApi (``config`` is read per request: SIGHUP)."""

    def __init__(self, engine: Engine, *, admin: AccountEditor | None, staff: Staff | None):
        self.engine = engine
        self.admin = admin
        self.staff = staff
        self.clock: Callable[[], float] = time.time

    async def principal(self, headers: Mapping[str, str], scope: Scope) -> Principal | None:
        """Who the bearer token names (None: nobody; without Staff, nobody ever)."""
        if self.staff is None:
            return None
        return await self.staff.bearer(headers.get("authorization"), source=client_of(scope))

    async def authorised(
        self, headers: Mapping[str, str], scope: Scope, action: Action
    ) -> Principal | Reply:
        """The principal, if it may ``action``; else the 401 or 403 reply."""
        principal = await self.principal(headers, scope)
        if principal is None:
            return unauthorised()
        try:
            principal.require(action)
        except NotPermitted as exc:
            return proto.error_reply(403, str(exc))
        return principal

    async def guarded(
        self,
        principal: Principal,
        scope: Scope,
        session: str,
        work: Callable[[], Awaitable[Reply]],
    ) -> Reply:
        """Run ``work`` as ``principal`` and map the administration errors to replies."""
        try:
            with acting(principal.actor(client_of(scope))):
                return await work()
        except NotPermitted as exc:
            return proto.error_reply(403, str(exc))
        except AccountNotFound as exc:
            return proto.error_reply(404, str(exc))
        except AccountExists as exc:
            return proto.error_reply(409, str(exc))
        except AccountError as exc:
            return proto.error_reply(400, str(exc))
        except AccountChanged as exc:
            # Another writer kept changing the account: nothing was written; the
            # client may send the same request again.
            log.warning("session=%s admin: %s", session, exc)
            return proto.error_reply(409, str(exc))
        except TemporaryFailure as exc:
            log.warning("session=%s admin: temporary failure: %s", session, exc)
            return proto.error_reply(
                503, f"temporary failure, try again later (request id {session})"
            )

    async def _body(self, scope: Scope, receive: Receive, config: HttpConfig) -> dict[str, Any]:
        if scope["method"] in ("POST", "PATCH", "PUT"):
            return proto.parse_json(await read_body(receive, config.max_body_bytes))
        return {}

    # ------------------------------------------------------------------ accounts

    async def accounts(
        self,
        route: admin_api.Route,
        scope: Scope,
        headers: Mapping[str, str],
        receive: Receive,
        session: str,
        config: HttpConfig,
    ) -> Reply:
        method: str = scope["method"]
        if (refused := proto.method_refusal(method, admin_api.allowed_methods(route))) is not None:
            return refused
        action = _ACCOUNT_ACTIONS[method]
        if route.app_passwords or route.app_password is not None:
            # Making and revoking another person's app passwords edits their account.
            action = Action.READ if method == "GET" else APP_PASSWORDS
        if route.history:
            action = Action.READ_HISTORY
        found = await self.authorised(headers, scope, action)
        if isinstance(found, Reply):
            return found
        admin = self.admin
        if admin is None:
            return proto.error_reply(404, "the admin API is not enabled in this process")
        body = await self._body(scope, receive, config)
        uid = route.uid
        log.info("session=%s admin %s %s by %s", session, method, scope["path"], found.label)

        async def work() -> Reply:
            if uid is None and method == "GET":
                search = admin_api.parse_search(scope.get("query_string", b"").decode("latin-1"))
                return admin_api.list_reply(await admin.search(search.pattern, limit=search.limit))
            if uid is None:
                create = admin_api.parse_create(body)
                pw = create.password
                generated = generate_password() if pw and pw.password is None else None
                account = await admin.create(
                    create.account,
                    password=generated or (pw.password if pw else None),
                    scheme=pw.scheme if pw else None,
                    changes=create.changes,
                )
                return admin_api.account_reply(account, status=201, generated=generated)
            if route.history:
                return await self._history(admin, uid, scope)
            if route.app_password is not None:
                await admin.revoke_app_password(uid, route.app_password)
                return admin_api.deleted_reply()
            if route.app_passwords and method == "GET":
                return admin_api.app_passwords_reply(await admin.show(uid))
            if route.app_passwords:
                want = admin_api.parse_app_password(body)
                new_app = await admin.add_app_password(
                    uid, name=want.name, services=want.services, expires=want.expires
                )
                return admin_api.new_app_password_reply(uid, new_app)
            if route.password:
                change = admin_api.parse_password(body)
                new = await admin.set_password(uid, change.password, scheme=change.scheme)
                return admin_api.password_reply(uid, new)
            if method == "GET":
                return admin_api.account_reply(await admin.show(uid))
            if method == "PATCH":
                updated = await admin.patch(uid, admin_api.parse_update(body, uid=uid))
                return admin_api.account_reply(updated)
            await admin.delete(uid)
            return admin_api.deleted_reply()

        return await self.guarded(found, scope, session, work)

    async def _history(self, admin: AccountEditor, uid: str, scope: Scope) -> Reply:
        """``GET .../{uid}/history``: the account's recent logins (docs/history.md)."""
        limit = admin_api.parse_history_limit(scope.get("query_string", b"").decode("latin-1"))
        account = await admin.show(uid)
        recorder = self.engine.history
        if recorder is None:
            return proto.error_reply(404, "no login history is kept ([history] enabled = false)")
        return admin_api.history_reply(account.uid, await recorder.recent(account.uid, limit=limit))

    # ------------------------------------------------------------------ staff and audit

    async def staff_routes(
        self,
        route: staff_api.StaffRoute,
        scope: Scope,
        headers: Mapping[str, str],
        receive: Receive,
        session: str,
        config: HttpConfig,
    ) -> Reply:
        method: str = scope["method"]
        if (refused := proto.method_refusal(method, staff_api.allowed_methods(route))) is not None:
            return refused
        principal = await self.principal(headers, scope)
        staff = self.staff
        if principal is None or staff is None:
            return unauthorised()
        body = await self._body(scope, receive, config)
        log.info("session=%s admin %s %s by %s", session, method, scope["path"], principal.label)
        now = self.clock()
        name = route.name

        async def work() -> Reply:
            if route.kind == "audit":
                principal.require(Action.READ)
                query = staff_api.parse_audit_query(
                    scope.get("query_string", b"").decode("latin-1"), now
                )
                return staff_api.audit_reply(await staff.audit.entries(query))
            if route.kind == "admins":
                if method == "GET":
                    principal.require(Action.READ)
                    found = [staff_api.admin_json(a) for a in await staff.admins()]
                    return staff_api.admins_reply(found)
                if method == "POST":
                    new = staff_api.parse_new_admin(body)
                    made = await staff.add_admin(principal, new.name, new.password, new.role)
                    return staff_api.admin_reply(staff_api.admin_json(made), status=201)
                assert name is not None
                if method == "PATCH":
                    role = staff_api.parse_role(body)
                    changed = await staff.set_role(principal, name, role)
                    return staff_api.admin_reply(staff_api.admin_json(changed))
                await staff.remove_admin(principal, name)
                return admin_api.deleted_reply()
            if method == "GET":
                principal.require(Action.READ)
                return staff_api.tokens_reply(await staff.tokens())
            if method == "POST":
                request = staff_api.parse_new_token(body, now)
                issued = await staff.create_token(
                    principal, request.name, request.scope, expires=request.expires
                )
                return staff_api.new_token_reply(issued.token, issued.value)
            assert name is not None
            await staff.revoke_token(principal, name)
            return admin_api.deleted_reply()

        return await self.guarded(principal, scope, session, work)

    # ------------------------------------------------------------------ bans and caches

    async def unblock(self, principal: Principal, scope: Scope, target: str) -> int:
        """Lift bans as ``principal`` (recorded in the audit log)."""
        with acting(principal.actor(client_of(scope))):
            lifted = await self.engine.guard.unblock(None if target == "*" else target)
            if self.staff is not None:
                await self.staff.audit.record("ban.unblock", target, ("ban",))
        log.info("admin: %s unblocked %s (%d ban(s))", principal.label, target, lifted)
        return lifted

    async def flush(self, principal: Principal, scope: Scope, user: str) -> int:
        """Forget ``user``'s cached logins and lift its protection, recorded."""
        with acting(principal.actor(client_of(scope))):
            removed = await self.engine.forget([user])
            if self.staff is not None:
                await self.staff.audit.record("cache.flush", user)
        return removed
