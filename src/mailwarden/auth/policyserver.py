"""Dovecot's auth-policy requests, decided by the guard (docs/policy-server.md).

What belongs here: what ``allow`` and ``report`` mean in terms of the guard's own
calls (Guard.source, blocked, delay, failed, succeeded). No rule of the guard is
repeated: a ban, a protection, a count and a known network are the guard's, exactly
as for a login the engine decides.

Keying. In this mode mailwarden holds no accounts: Dovecot's passdb decides, and
a name is only known to exist once Dovecot reports a success for it. So every
login is counted as a *name*, under :func:`~mailwarden.guard.policy.unknown_subject`
(``?<digest>`` of the lower-cased login), never in clear, whatever Dovecot later
says about it: one key per name from the first attempt on, which does not change
when the name turns out to exist and tells nothing about which names do.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

from mailwarden.guard.policy import Guard, unknown_subject
from mailwarden.protocols.dovecot_policy import CONTINUE, PolicyRequest, Verdict

log = logging.getLogger("mailwarden.policy")

#: What a report did: counted a failure, saw a success, left a refusal of ours
#: alone, or let a repeated wrong password pass uncounted (``distinct_passwords``).
ReportOutcome = Literal["failure", "repeated", "success", "policy_reject", "off"]
#: What an ``allow`` answered.
AllowOutcome = Literal["continue", "reject", "delay", "off"]


class PolicyServer:
    """``allow`` and ``report`` over one :class:`Guard` (shared through its store)."""

    def __init__(self, guard: Guard, *, reject_message: str = "") -> None:
        self.guard = guard
        self.reject_message = reject_message

    async def allow(self, request: PolicyRequest) -> tuple[AllowOutcome, Verdict]:
        """A banned network is refused, a protected name from a network it never
        logged in from is delayed (``account_delay``, whole seconds, rounded up),
        anything else continues."""
        guard = self.guard
        source = guard.source(request.remote)
        if source is None:
            return "off", CONTINUE
        if await guard.blocked(source) is not None:
            return "reject", Verdict(status=-1, message=self.reject_message)
        delay = await guard.delay(source, unknown_subject(request.login))
        if delay > 0:
            return "delay", Verdict(status=math.ceil(delay))
        return "continue", CONTINUE

    async def report(self, request: PolicyRequest) -> ReportOutcome:
        """Count a failure (once per distinct ``pwhash``), or remember a success.

        A failure that our own refusal caused (``policy_reject``) is not counted:
        the attempt was refused before any password check, as the engine refuses a
        banned source without counting it. A report whose ``pwhash`` stands for no
        password (none sent, or a challenge-response mechanism) counts every time.
        """
        guard = self.guard
        source = guard.source(request.remote)
        if source is None:
            return "off"
        subject = unknown_subject(request.login)
        if request.success:
            await guard.succeeded(source, subject)
            return "success"
        if request.policy_reject:
            return "policy_reject"
        counted = await guard.failed(
            source, uid=subject, password=None, password_variant=request.pwhash or None
        )
        return "failure" if counted else "repeated"
