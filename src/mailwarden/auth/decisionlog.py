"""The log line of one login decision: what the engine writes after each
:meth:`~mailwarden.auth.engine.Engine.authenticate`.

What belongs here: turning an attempt and its outcome into the ``auth ...`` text
line and its structured ``decision`` record (logs.py writes it as JSON when asked).
No decision is made here; the engine counts the result this returns.
"""

from __future__ import annotations

import logging

from mailwarden.model import Accepted, AuthAttempt, AuthOutcome, Denied, Unavailable, outcome_label

log = logging.getLogger("mailwarden.auth")


def log_decision(attempt: AuthAttempt, outcome: AuthOutcome) -> str:
    """Log ``outcome`` of ``attempt`` (at INFO) and return its result word:
    ``accepted``, ``denied`` or ``unavailable`` (what ``status`` counts)."""
    match outcome:
        case Accepted():
            result, detail = (
                "accepted",
                (f"master={outcome.master_user}" if outcome.master_user else ""),
            )
        case Denied():
            result, detail = "denied", outcome.reason.value
        case Unavailable():
            result, detail = "unavailable", outcome.detail
    if not log.isEnabledFor(logging.INFO):
        return result
    log.info(
        "auth frontend=%s service=%s mech=%s user=%r rip=%s session=%s result=%s %s",
        attempt.frontend,
        attempt.service,
        attempt.mechanism,
        attempt.username,
        attempt.remote_ip or "-",
        attempt.session or "-",
        result,
        detail,
        extra={
            "decision": {
                "event": "auth",
                "request_id": attempt.session,
                "frontend": attempt.frontend,
                "service": attempt.service,
                "mechanism": attempt.mechanism,
                "user": attempt.username,
                "remote_ip": attempt.remote_ip,
                "result": outcome_label(outcome),
                "reason": detail or None,
            }
        },
    )
    return result
