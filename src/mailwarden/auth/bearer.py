"""Bearer tokens as credentials: whether a token proves the login's account.

The engine asks :meth:`BearerCheck.valid` for a :class:`~mailwarden.model.BearerToken`
as it asks the password context for a :class:`~mailwarden.model.Password`; what
follows a proven credential (status, service switches, networks, master users, the
guard) is the engine's and access.py's, the same for both.

* **No ``[oauth2]``**: the token is verified like a password (Dovecot's behaviour
  with a passdb that is not ``oauth2``: ``auth_request_verify_plain``), so a site
  that stores tokens as passwords keeps working.
* **With ``[oauth2]``**: the verifier (mailwarden.oauth2) judges the token first,
  whether or not the account exists, so the work and the time spent do not tell
  which accounts exist. Then the token's user (``username_claim``) must name the
  same account as the SASL user: equal after the site's name rules (Dovecot
  compares both sides after ``username_format``), or one of that account's logins.
  A valid token of another user is refused like a wrong password: a token proves
  who the provider says it belongs to, not whoever presents it.

Refusals are logged with their reason and never with the token.
"""

from __future__ import annotations

import logging

from mailwarden.auth.passwords import PasswordContext
from mailwarden.auth.usernames import UsernameRules
from mailwarden.model import Account, BearerToken
from mailwarden.oauth2.claims import TokenRefused, TokenVerifier

log = logging.getLogger("mailwarden.auth")


def names_account(
    token_user: str, account: Account, authcid: str | None, rules: UsernameRules
) -> bool:
    """Whether the token's user is the login's account (module docstring)."""
    name = rules.normalise(token_user)
    if name is None:
        return False
    if name == authcid:
        return True
    return any(rules.normalise(login) == name for login in account.logins())


class BearerCheck:
    """Verifies bearer tokens: with ``verifier`` (``[oauth2]``), else as passwords."""

    def __init__(self, verifier: TokenVerifier | None, passwords: PasswordContext) -> None:
        self.verifier = verifier
        self.passwords = passwords

    async def valid(
        self,
        token: BearerToken,
        account: Account | None,
        authcid: str | None,
        rules: UsernameRules,
        *,
        service: str = "",
        remote_ip: str | None = None,
    ) -> bool:
        """Whether ``token`` proves ``account`` (found by ``authcid``) for
        ``service``. Raises ProviderUnavailable when the provider cannot be asked (the
        engine's ``Unavailable``). Without a verifier the token is a password, with
        every rule of one (an app password's services, app-passwords-only)."""
        if self.verifier is None:
            return await self.passwords.verify(
                token.as_password(), account, authcid or "", service=service, remote_ip=remote_ip
            )
        result = await self.verifier.verify(token.value)
        if isinstance(result, TokenRefused):
            log.info("oauth2: token for %r refused: %s", authcid, result.reason)
            return False
        if account is None:
            return False
        if not names_account(result.username, account, authcid, rules):
            log.info(
                "oauth2: token of %r presented for %r: refused", result.username[:255], authcid
            )
            return False
        return True

    async def aclose(self) -> None:
        if self.verifier is not None:
            await self.verifier.aclose()
