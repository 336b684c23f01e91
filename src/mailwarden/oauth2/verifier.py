"""The token verifier: a bearer token in, whose it is (or why it is refused) out.

:class:`~mailwarden.oauth2.claims.TokenVerifier` is what the engine is given
(auth/bearer.py asks it);
:class:`ProviderVerifier` implements it over a :class:`~mailwarden.oauth2.provider.Transport`:

* a JWT (three base64url parts), when ``issuer`` is set, is validated locally:
  header read (signatures.py), key found by ``kid`` in the issuer's key set,
  signature verified by joserfc, claims checked (claims.py);
* any other token, when ``introspection_url`` is set, is asked about (RFC 7662);
  active answers are remembered (cache.py);
* anything else is refused.

The key set is fetched on first use, from ``jwks_uri`` or the one OpenID Connect
discovery names, and again when it is older than ``jwks_max_age``. A token whose
``kid`` is unknown makes it fetch again, **at most once per**
``jwks_refresh_interval``: the provider rotated its keys, or someone is making up
``kid`` values, and then a forged token must not turn into a request each.
Concurrent requests wait for one fetch. When a refresh fails, the keys held keep
serving (logged); with none held yet, a token is ``Unavailable``, not refused.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from joserfc.jwk import Key

from mailwarden.config import OAuth2Config
from mailwarden.errors import ProviderUnavailable
from mailwarden.oauth2.cache import IntrospectionCache
from mailwarden.oauth2.claims import ClaimRules, TokenIdentity, TokenRefused, check_claims
from mailwarden.oauth2.provider import (
    HttpRequest,
    Transport,
    introspection_of,
    introspection_request,
    jwks_of,
    jwks_uri_of,
)
from mailwarden.oauth2.signatures import (
    JwtHeader,
    KeyRing,
    looks_like_jwt,
    read_header,
    verified_claims,
)

log = logging.getLogger("mailwarden.oauth2")

#: Longest token looked at; a longer one is refused unparsed (a security limit).
MAX_TOKEN_LENGTH = 16384


def claim_rules(config: OAuth2Config) -> ClaimRules:
    return ClaimRules(
        issuer=config.issuer,
        audiences=config.audience,
        scopes=config.scope,
        username_claim=config.username_claim,
        leeway=config.leeway,
    )


class ProviderVerifier:
    """A :class:`~mailwarden.oauth2.claims.TokenVerifier` for one ``[oauth2]`` provider
    (module docstring).

    ``client_secret``: the introspection secret (read from ``client_secret_file`` by
    the caller); ``clock``: wall-clock seconds, for ``exp``; ``monotonic``: for the
    key set's age and refresh limit.
    """

    def __init__(
        self,
        config: OAuth2Config,
        transport: Transport,
        *,
        client_secret: str = "",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.transport = transport
        self.rules = claim_rules(config)
        self._secret = client_secret or config.client_secret
        self._clock = clock
        self._monotonic = monotonic
        self._algorithms = frozenset(config.algorithms)
        self._jwks_uri = config.jwks_uri or None
        self._ring: KeyRing | None = None
        self._fetched = -math.inf  # when the key set held was fetched
        self._tried = -math.inf  # when a fetch was last tried
        self._lock = asyncio.Lock()
        self.cache = IntrospectionCache(
            size=config.introspection_cache_size, ttl=config.introspection_cache_ttl
        )

    async def verify(self, token: str) -> TokenIdentity | TokenRefused:
        if not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
            return TokenRefused(reason="not a bearer token (RFC 6750 b64token)")
        if self.config.issuer and looks_like_jwt(token):
            return await self._local(token)
        if self.config.introspection_url:
            return await self._introspect(token)
        return TokenRefused(reason="not a JWT, and no introspection_url")

    async def aclose(self) -> None:
        await self.transport.aclose()

    # ------------------------------------------------------------------ local JWT

    async def _local(self, token: str) -> TokenIdentity | TokenRefused:
        header = read_header(token, self._algorithms)
        if isinstance(header, TokenRefused):
            return header
        key = await self._key_for(header)
        if key is None:
            return TokenRefused(reason=f"no key {str(header.kid)[:64]!r} for {header.alg}")
        claims = verified_claims(token, key, header)
        if isinstance(claims, TokenRefused):
            return claims
        return check_claims(claims, self.rules, self._clock())

    def _due(self, now: float) -> bool:
        return now - self._tried >= self.config.jwks_refresh_interval

    async def _key_for(self, header: JwtHeader) -> Key | None:
        now = self._monotonic()
        if self._ring is None or (now - self._fetched >= self.config.jwks_max_age):
            await self._refresh()
        ring = self._ring
        if ring is None:
            raise ProviderUnavailable("oauth2: the issuer's keys could not be fetched yet")
        key = ring.find(header)
        if key is None:
            await self._refresh()  # a rotation at the provider (rate-limited)
            key = self._ring.find(header) if self._ring is not None else None
        return key

    async def _refresh(self) -> None:
        """Fetch the key set, unless it was fetched or tried within the refresh
        interval (also by a request that held the lock while this one waited)."""
        async with self._lock:
            now = self._monotonic()
            if not self._due(now):
                return
            self._tried = now
            try:
                ring = await self._fetch_keys()
            except ProviderUnavailable as exc:
                if self._ring is None:
                    raise
                log.warning("oauth2: keys not refreshed (%s); the ones held stay", exc)
                return
            self._ring, self._fetched = ring, now
            log.info("oauth2: %d signing keys (kid %s)", len(ring.keys), ", ".join(ring.kids))

    async def _fetch_keys(self) -> KeyRing:
        if self._jwks_uri is None:
            answer = await self.transport.send(HttpRequest(url=self.config.keys_url))
            self._jwks_uri = jwks_uri_of(answer, self.config.issuer)
        answer = await self.transport.send(HttpRequest(url=self._jwks_uri))
        return KeyRing.from_jwks(jwks_of(answer))

    # ------------------------------------------------------------------ introspection

    async def _introspect(self, token: str) -> TokenIdentity | TokenRefused:
        now = self._clock()
        cached = self.cache.get(token, now)
        if cached is not None:
            return cached
        c = self.config
        answer = await self.transport.send(
            introspection_request(c.introspection_url, token, c.client_id, self._secret)
        )
        claims = introspection_of(answer)
        if isinstance(claims, TokenRefused):
            return claims
        result = check_claims(claims, self.rules, now, introspected=True)
        if isinstance(result, TokenIdentity):
            self.cache.put(token, result, now)
        return result
