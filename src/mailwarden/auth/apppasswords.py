"""App passwords at login: which one a presented secret is, whether the main password
may be used, and the record of each app password's last use.

What belongs here: the rules :class:`~mailwarden.auth.passwords.PasswordContext`
applies to app passwords, and :class:`UseRecorder`, which writes last uses off the
login path. How an app password is made, stored and revoked is
:mod:`mailwarden.accounts.apppasswords`'s; the value and its digest are
:mod:`mailwarden.auth.tokens`'s.

The rules, and why (docs/credentials.md, "App passwords"):

* **An app password costs microseconds.** A presented value that has the shape of
  one (``tokens.recognise``) is digested once and compared with the digests of the
  account's app passwords. It matches only an app password that may use the
  service (never the web page) and has not expired, checked against the account
  as read for this login: nothing about an app password is cached, so revoking
  one, or its expiry, takes effect on the next login on every node.
* **Anything else is the main password**, verified as always, a value that looked
  like an app password but matched none included. So a wrong app password costs
  and answers exactly what a wrong password does (the real hash for an account,
  the dummy one for an unknown name), and the guard counts it once, like any.
* **App passwords only.** The main password of an account so set opens the web
  page alone: for any other service it is verified as usual (same time) and then
  refused as a wrong password.
* **Last use is written later.** A login notes the use in memory; a background
  task writes the notes in one batch per :data:`USE_WRITE_INTERVAL`, the latest per
  app password only, at most :data:`MAX_PENDING_USES` of them. A slow or failing
  write never delays or fails a login; a full buffer drops new notes (counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence

from mailwarden.auth import tokens
from mailwarden.auth.tokens import TokenKind
from mailwarden.errors import WriteRefused
from mailwarden.model import (
    WEB_SERVICE,
    Account,
    AppPassword,
    AppPasswordUsed,
    LastUse,
    Password,
    login_key,
)

log = logging.getLogger("mailwarden.auth")

#: Seconds between two batched writes of last uses.
USE_WRITE_INTERVAL = 10.0
#: App passwords whose last use waits to be written, at most (one note each).
MAX_PENDING_USES = 10_000

UseWriter = Callable[[Sequence[AppPasswordUsed]], Awaitable[None]]


def matching(password: Password, account: Account, service: str, now: float) -> AppPassword | None:
    """The app password of ``account`` that ``password`` is, if it may log in to
    ``service`` at ``now`` (Unix seconds); None for anything else (then the value
    is to be tried as the main password)."""
    if not account.app_passwords:
        return None
    value = tokens.recognise(TokenKind.APP_PASSWORD, password.value)
    if value is None:
        return None
    digest = tokens.digest(TokenKind.APP_PASSWORD, value)
    for app in account.app_passwords:
        if hmac.compare_digest(app.digest, digest):
            return app if app.allows(service) and not app.expired(now) else None
    return None


def main_password_allowed(account: Account, service: str) -> bool:
    """Whether ``account``'s main password may log in to ``service``: always, unless
    the account is set to app passwords only, which leaves it the web page."""
    return not account.app_passwords_only or service.lower() == WEB_SERVICE


class UseRecorder:
    """Last uses of app passwords, coalesced in memory and written in batches (see
    the module docstring). ``write``: the directory's ``record_app_password_uses``."""

    def __init__(
        self,
        write: UseWriter,
        *,
        interval: float = USE_WRITE_INTERVAL,
        max_pending: int = MAX_PENDING_USES,
    ) -> None:
        self._write = write
        self.interval = interval
        self.max_pending = max_pending
        self._pending: dict[tuple[str, str], AppPasswordUsed] = {}
        self._timer: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failures = 0

    def note(self, account: Account, app: AppPassword, use: LastUse) -> None:
        """Remember that ``app`` of ``account`` was just used; never blocks or raises."""
        key = (login_key(account.uid), app.id)
        if key not in self._pending and len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending[key] = AppPasswordUsed(uid=account.uid, app_password=app.id, use=use)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): written at flush()
                return
            self._timer = loop.create_task(self._later())

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _later(self) -> None:
        try:
            await asyncio.sleep(self.interval)
        finally:
            self._timer = None
        await self._flush_pending()

    async def flush(self) -> None:
        """Write every pending use now (at shutdown, and by tests); the timer stops."""
        # A timer still set is still asleep (_later clears it before it writes).
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self._flush_pending()

    async def _flush_pending(self) -> None:
        if not self._pending:
            return
        batch, self._pending = list(self._pending.values()), {}
        try:
            await self._write(batch)
        except WriteRefused:
            return  # a directory that stores no app passwords has none to record
        except Exception:  # a lost last use must never affect anything else
            self.failures += 1
            log.warning("could not record the last use of %d app password(s)", len(batch))
            return
        self.written += len(batch)
