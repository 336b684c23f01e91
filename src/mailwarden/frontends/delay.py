"""The failure delay: a refused login is answered late, like Dovecot's auth_failure_delay.

It slows down a client that guesses passwords over one connection, and makes a
wrong password and an unknown user take the same time on the wire. The delay is
randomised (±10 %) so it cannot be subtracted out, counted from when the request
arrived (time already spent hashing is not added twice), and capped so that the
answer always leaves before a caller's own timeout (Postfix waits 10 s for its
auth server).
"""

from __future__ import annotations

import asyncio
import random

FAILURE_JITTER = 0.1
"""Relative spread of the failure delay (±10 %)."""

MAX_REPLY_DELAY = 9.0
"""Latest a delayed refusal may leave after the request arrived (Postfix waits 10 s)."""


async def delay_failure(seconds: float, since: float) -> None:
    """Sleep until ``seconds`` (randomised, capped) after loop time ``since``."""
    if seconds <= 0:
        return
    jitter = random.uniform(1 - FAILURE_JITTER, 1 + FAILURE_JITTER)
    due = since + min(seconds * jitter, MAX_REPLY_DELAY)
    wait = due - asyncio.get_running_loop().time()
    if wait > 0:
        await asyncio.sleep(wait)
