"""OAuth 2.0 bearer tokens (XOAUTH2, OAUTHBEARER, the HTTP API): validated, not
compared like passwords. docs/credentials.md says how a site sets it up.

The package, bottom up:

* :mod:`.claims` - the verdict values (:class:`~.claims.TokenIdentity`,
  :class:`~.claims.TokenRefused`), the :class:`~.claims.TokenVerifier` interface the
  engine is given, and the claims rules as pure functions;
* :mod:`.signatures` - JWT signatures and the issuer's key set, through joserfc
  (no signature code of our own); no I/O;
* :mod:`.provider` - requests to the identity provider and their answers as values,
  the :class:`~.provider.Transport` interface, what each answer means (an outage is
  ``ProviderUnavailable``), and an in-memory transport for tests;
* :mod:`.cache` - introspection answers remembered until the token expires;
* :mod:`.verifier` - :class:`~.verifier.ProviderVerifier`: local JWT validation with
  the key set cached and refreshed, introspection for opaque tokens;
* :mod:`.transport` - the httpx transport, and :func:`~.transport.open_verifier`,
  which app.py calls.

What a valid token then may do (the account exists, its status, services and
networks) is not decided here: auth/bearer.py compares the token's user with the
SASL user, and the engine applies the same access policy as for a password.
Importing this package imports only :mod:`.claims`: httpx and joserfc are loaded by
:func:`open_verifier`, when ``[oauth2]`` is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mailwarden.oauth2.claims import TokenIdentity, TokenRefused, TokenVerifier

if TYPE_CHECKING:
    from mailwarden.config import OAuth2Config

__all__ = ["TokenIdentity", "TokenRefused", "TokenVerifier", "open_verifier"]


def open_verifier(config: OAuth2Config, resolve: Callable[[str], Path]) -> TokenVerifier | None:
    """The verifier ``[oauth2]`` describes (``resolve``: a config-relative path made
    absolute, for ``client_secret_file``), or None when it is not configured: bearer
    tokens are then verified like passwords. ConfigError when the secret file cannot
    be read."""
    if not config.enabled:
        return None
    from mailwarden.oauth2.transport import provider_verifier  # noqa: PLC0415 - see above

    return provider_verifier(config, resolve)
