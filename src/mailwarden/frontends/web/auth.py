"""Who may use the self-service page, and the proof a security-relevant change needs.

What belongs here: the web page's calls of :meth:`Engine.authenticate` (sign-in
and re-entering the current password) and the rules on top of them. The page
(frontends/web/) renders and routes; it asks this module whether to let a user in
and whether a change may go ahead.

Two rules, each against a takeover (docs/web.md, "What users can do"):

* **Master logins never reach self-service.** ``target*master`` with the
  master's password is a valid *mail* login as the target (Dovecot's master
  users, for support and migrations), but it does not prove the target's
  password; on this page it would let the master change the target's password,
  keys and forward address. The sign-in answers it with the same "invalid login"
  as any failure.
* **A change that hands over the account needs the current password**, not only a
  session: a new password, the SSH keys (sshd is served them), the OpenPGP key
  (the mail gateway obeys mail signed by it, including a password change) and the
  forward address (mail, and with it password resets elsewhere, goes there).
  A session cookie can be stolen (a shared computer, a copied browser profile);
  the password must be known. The check is a real login through the engine
  (front end ``web``), so the guard counts a wrong one like any failed sign-in.
  We ask for the password each time rather than accept a fresh sign-in within
  some minutes: a stolen cookie is often a fresh one.
"""

from __future__ import annotations

import enum
import logging
import secrets

from mailwarden.auth.engine import Engine
from mailwarden.errors import TemporaryFailure
from mailwarden.model import (
    Accepted,
    Account,
    AuthAttempt,
    AuthOutcome,
    Password,
    Unavailable,
)

log = logging.getLogger("mailwarden.web")

#: The service name of a web sign-in (``service.web = off`` locks a user out of the page).
SERVICE = "web"
#: Longest sign-in name and password looked at; longer ones are refused unchecked.
MAX_USERNAME = 255
MAX_PASSWORD = 1024
#: Profile fields (the mail gateway's names) whose change needs the current password.
CONFIRMED_PROFILE_FIELDS = frozenset({"emailforward"})


class Proof(enum.Enum):
    """What the current password, entered again, proved."""

    CONFIRMED = "confirmed"
    REFUSED = "refused"  # empty, wrong, or not this account's own password


async def authenticate(
    engine: Engine, username: str, password: str, *, client_ip: str | None, secured: bool
) -> AuthOutcome:
    """One web login through the engine (the guard, the service switch, the delay).

    Every form reaches the engine, an empty or oversized one too: the engine refuses
    a name it cannot use after the same dummy verification as an unknown one, so
    the time of the answer says nothing. An oversized value is not passed on (the
    name is sent empty, the password cut to the limit): it can only be refused.
    """
    if not username or not password or len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        username, password = "", password[:MAX_PASSWORD]
    attempt = AuthAttempt(
        username=username,
        credentials=Password.from_text(password),
        service=SERVICE,
        mechanism="PLAIN",
        remote_ip=client_ip,
        secured=secured,
        session=secrets.token_hex(8),
        frontend="web",
    )
    return await engine.authenticate(attempt)


def self_service(outcome: AuthOutcome) -> Accepted | None:
    """The login that may open the self-service page: accepted, and no master login."""
    if not isinstance(outcome, Accepted):
        return None
    if outcome.master_user is not None:
        log.info(
            "web: master user %s signed in as %s: refused for self-service",
            outcome.master_user,
            outcome.user,
        )
        return None
    return outcome


async def confirm_password(
    engine: Engine, account: Account, password: str, *, client_ip: str | None, secured: bool
) -> Proof:
    """Whether ``password`` is ``account``'s own current password.

    TemporaryFailure when the directory cannot tell (never a refusal then).
    """
    outcome = await authenticate(
        engine, account.uid, password, client_ip=client_ip, secured=secured
    )
    if isinstance(outcome, Unavailable):
        raise TemporaryFailure(outcome.detail)
    accepted = self_service(outcome)
    if accepted is None or accepted.account.uid != account.uid:
        return Proof.REFUSED
    return Proof.CONFIRMED
