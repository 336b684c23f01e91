"""The master protocol over asyncio: auth-master and auth-userdb sockets.

The peers are trusted local processes (doveadm, LDA/LMTP, the login master). Every
command runs as a task of its own and is answered when ready; replies carry the
command's id. What each command asks of the engine, and the reply:

===============  ===========================  =========================================
Command          Engine call                  Reply
===============  ===========================  =========================================
``USER``         ``lookup(user, service=)``   ``USER id user fields`` / ``NOTFOUND`` /
                                              ``FAIL`` (doveadm exits 0 / 67 / 75)
``PASS``         ``passdb_lookup(user)``      ``PASS id user=… fields`` / ``NOTFOUND`` /
                                              ``FAIL``
``LIST``         ``iterate()``                ``LIST id user`` per match, ``DONE id`` (or
                                              ``DONE id fail`` when iteration failed)
``REQUEST``      ``lookup()`` of the login    ``USER id user fields`` plus ``master_user``,
                 kept by an auth-login socket ``auth_mech``, ``anonymous``, ``auth_user``,
                                              ``local_name`` as Dovecot adds them; ``FAIL``
``CACHE-FLUSH``  ``forget(users)``            ``OK id count``
===============  ===========================  =========================================

``REQUEST`` and ``CACHE-FLUSH`` exist only on master sockets (the codec refuses them
on userdb sockets). A ``REQUEST`` is refused with a plain ``FAIL``, as in Dovecot,
for an unknown client pid, a wrong cookie, an unknown, unfinished, failed or
already fetched login, or a ``session_pid`` that differs from the pid of the
process connected to the master socket (``SO_PEERCRED``).

On a userdb socket, a peer that is not trusted (``restricted_uid``; rules in
:mod:`~mailwarden.frontends.dovecot_sockets`) gets ``USER`` only for an account
whose ``uid`` is its own (anything else, unknown users included, is ``FAIL``);
``PASS`` is ``FAIL`` and ``LIST`` is ``DONE id fail``.

The ``LIST`` mask (``user=``) is matched like Dovecot's ``wildcard_match``: ``*``
and ``?`` are wildcards and every other character is literal, case-sensitively.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from typing import Any, assert_never

from mailwarden.errors import TemporaryFailure
from mailwarden.frontends.connlimit import ConnectionGate
from mailwarden.frontends.dovecot_common import Connection, DovecotState, peer_pid
from mailwarden.lograte import RateLimitedLog
from mailwarden.model import NotFound, Unavailable, UserRecord
from mailwarden.protocols.dovecot_common import stored
from mailwarden.protocols.dovecot_master import (
    AuthMasterConnection,
    CacheFlush,
    ConnectionClosed,
    ListUsers,
    MasterRequest,
    MasterVersion,
    PassLookup,
    UserLookup,
    handshake,
)

log = logging.getLogger("mailwarden.dovecot")
# A directory outage fails every userdb lookup (each mail delivered): a line every
# few seconds, with the count of the others.
_lookup_failures = RateLimitedLog(log)

LIST_DRAIN_EVERY = 256
"""Users written between waits for the peer to read, during a LIST."""


def wildcard(mask: str) -> re.Pattern[str]:
    """Dovecot's ``wildcard_match`` as a regular expression (``*``, ``?``; rest literal)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in mask)
    return re.compile("".join(parts), re.DOTALL)


class MasterConnection(Connection):
    """One auth-master (``userdb_only=False``) or auth-userdb connection."""

    def __init__(
        self,
        state: DovecotState,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        userdb_only: bool,
        label: str,
        restricted_uid: int | None = None,
    ) -> None:
        super().__init__(state, reader, writer, label=label)
        self.restricted_uid = restricted_uid
        self.codec = AuthMasterConnection(
            userdb_only=userdb_only, max_line_length=state.config.max_line_length
        )
        self.peer_pid = peer_pid(writer)

    def greeting(self) -> bytes:
        return handshake(spid=self.state.spid)

    def feed(self, data: bytes) -> None:
        self.codec.receive_data(data)

    def dispatch(self) -> None:
        while (event := self.codec.next_event()) is not None:
            match event:
                case MasterVersion():
                    pass
                case UserLookup():
                    self._run(self._user(event), request_id=event.id)
                case PassLookup():
                    self._run(self._pass(event), request_id=event.id)
                case ListUsers():
                    self._run(self._list(event), request_id=event.id)
                case MasterRequest():
                    self._run(self._request(event), request_id=event.id)
                case CacheFlush():
                    self._run(self._flush(event), request_id=event.id)
                case ConnectionClosed():
                    self.closing = True
                case _:
                    assert_never(event)

    def request_crashed(self, request_id: int) -> None:
        self.write(self.codec.fail(request_id))

    def _run(self, coro: Coroutine[Any, Any, None], *, request_id: int) -> None:
        """Run one request under ``dovecot.max_pending_total``; beyond it, FAIL at once."""
        requests = self.state.requests
        if not requests.admit():
            coro.close()
            self.request_crashed(request_id)
            return
        self.spawn(_released(coro, requests), request_id=request_id)

    # ------------------------------------------------------------------ commands

    async def _user(self, event: UserLookup) -> None:
        outcome = await self.state.engine.lookup(event.user, service=event.service)
        if self.restricted_uid is not None and not (
            isinstance(outcome, UserRecord)
            and outcome.fields.get("uid") == str(self.restricted_uid)
        ):
            self._refuse(event.id, "USER of another uid's account")
            return
        self.write(self._lookup_reply(event.id, outcome, user_reply=True))

    async def _pass(self, event: PassLookup) -> None:
        if self.restricted_uid is not None:
            self._refuse(event.id, "PASS")
            return
        outcome = await self.state.engine.passdb_lookup(event.user)
        self.write(self._lookup_reply(event.id, outcome, user_reply=False))

    def _refuse(self, request_id: int, what: str) -> None:
        """A peer without full access asked for more than its own account."""
        log.warning(
            "dovecot %s: %s (request %d) refused: peer is not trusted "
            "(dovecot.userdb_trusted_users/_groups)",
            self.label,
            what,
            request_id,
        )
        self.write(self.codec.fail(request_id))

    def _lookup_reply(
        self, request_id: int, outcome: UserRecord | NotFound | Unavailable, *, user_reply: bool
    ) -> bytes:
        match outcome:
            case UserRecord():
                fields = stored(outcome.fields)
                if user_reply:
                    return self.codec.user_found(request_id, outcome.user, fields)
                return self.codec.pass_found(request_id, outcome.user, fields)
            case NotFound():
                return self.codec.not_found(request_id)
            case Unavailable():
                _lookup_failures.warning(
                    self.label,
                    "dovecot %s: lookup %d failed: %s",
                    self.label,
                    request_id,
                    outcome.detail,
                )
                return self.codec.fail(request_id)
            case _:
                assert_never(outcome)

    async def _list(self, event: ListUsers) -> None:
        if self.restricted_uid is not None:
            log.warning("dovecot %s: LIST %d refused: peer is not trusted", self.label, event.id)
            self.write(self.codec.list_done(event.id, failed=True))
            return
        mask = wildcard(event.user_mask) if event.user_mask else None
        failed = False
        written = 0
        try:
            async for user in self.state.engine.iterate():
                if mask is not None and not mask.fullmatch(user):
                    continue
                self.write(self.codec.list_user(event.id, user))
                written += 1
                if written % LIST_DRAIN_EVERY == 0:
                    await self.writer.drain()
        except TemporaryFailure as exc:
            log.warning("dovecot %s: LIST %d failed: %s", self.label, event.id, exc)
            failed = True
        self.write(self.codec.list_done(event.id, failed=failed))

    async def _request(self, event: MasterRequest) -> None:
        if (
            event.session_pid is not None
            and self.peer_pid is not None
            and event.session_pid != self.peer_pid
        ):
            log.error(
                "dovecot %s: REQUEST %d: session pid %d is not the peer's pid %d",
                self.label,
                event.id,
                event.session_pid,
                self.peer_pid,
            )
            self.write(self.codec.fail(event.id))
            return
        login = self.state.logins.take(event.client_pid, event.auth_id, event.cookie)
        if login is None:
            log.warning(
                "dovecot %s: REQUEST %d: no finished login %d.%d for that cookie",
                self.label,
                event.id,
                event.client_pid,
                event.auth_id,
            )
            self.write(self.codec.fail(event.id))
            return
        outcome = await self.state.engine.lookup(login.user, service=login.service)
        if not isinstance(outcome, UserRecord):
            self.write(self._lookup_reply(event.id, outcome, user_reply=True))
            return
        self.write(self.codec.request_found(event.id, outcome.user, outcome.fields, login))

    async def _flush(self, event: CacheFlush) -> None:
        engine = self.state.engine
        # `doveadm auth cache flush alice` is how a Dovecot admin helps a user: the
        # engine's one flush rule also lifts the account's protection (docs/guard.md).
        count = await engine.forget(list(event.users) or None)
        self.write(self.codec.cache_flushed(event.id, count))


async def _released(coro: Coroutine[Any, Any, None], requests: ConnectionGate) -> None:
    """Run ``coro``, then give its place under ``dovecot.max_pending_total`` back."""
    try:
        await coro
    finally:
        requests.release()
