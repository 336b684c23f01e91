"""The ``pam_exec`` helper's front end: one request (protocols/pam.py) to the engine.

``auth`` asks :meth:`Engine.authenticate` with the token; ``account`` asks
:meth:`Engine.account_state` (status and service switches, pam_mapi's OR-list
included). Nothing is decided here: the protocol core maps the engine's answer to
a PAM return value.
"""

from __future__ import annotations

from mailwarden.auth.engine import Engine
from mailwarden.protocols.pam import PamCode, PamRequest, account_answer, auth_answer


async def answer(engine: Engine, request: PamRequest, token: bytes) -> tuple[PamCode, str | None]:
    """The exit code for ``request`` (``token``: standard input, for ``auth``) and the
    line to log."""
    if request.phase == "auth":
        outcome = await engine.authenticate(request.attempt(token))
        await engine.drain()  # a rehash or guard write must finish before the process ends
        return auth_answer(request, outcome)
    state = await engine.account_state(request.user, request.service, switches=request.switches)
    return account_answer(request, state)
