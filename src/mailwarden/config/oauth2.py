"""``[oauth2]``: how XOAUTH2/OAUTHBEARER bearer tokens are validated (docs/credentials.md).

Empty (the default) means no OAuth 2.0 identity provider: a bearer token is then
verified like a password, as Dovecot does with a passdb that is not ``oauth2``.
With ``issuer`` set, JWT access tokens are validated locally against the issuer's
published keys; with ``introspection_url`` set, other tokens are asked about
(RFC 7662). Both may be set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailwarden.config.build import Section, require

#: Signature algorithms a site may allow. Never ``none``, and never an HMAC
#: (``HS*``): with a key taken from a public JWKS, an HMAC "signature" can be made by
#: anyone who read that key (the RFC 8725 §2.1 algorithm-confusion attack).
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuth2Config(Section):
    """``[oauth2]``: the identity provider whose bearer tokens log in."""

    issuer: str = ""
    discovery_url: str = ""
    jwks_uri: str = ""
    audience: tuple[str, ...] = ()
    scope: tuple[str, ...] = ()
    username_claim: Literal["email", "preferred_username", "sub"] = "email"
    algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
    leeway: float = 30.0
    jwks_max_age: float = 3600.0
    jwks_refresh_interval: float = 60.0
    introspection_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    client_secret_file: str = ""
    introspection_cache_size: int = 10000
    introspection_cache_ttl: float = 300.0
    timeout: float = 5.0
    max_response_bytes: int = 1_000_000

    @property
    def enabled(self) -> bool:
        """Whether bearer tokens are validated as tokens (else: like passwords)."""
        return bool(self.issuer or self.introspection_url)

    @property
    def keys_url(self) -> str:
        """Where the discovery document is read (when ``jwks_uri`` is not set)."""
        if self.discovery_url:
            return self.discovery_url
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def check(self, key: str) -> None:
        for name in ("issuer", "discovery_url", "jwks_uri", "introspection_url"):
            value: str = getattr(self, name)
            require(
                not value or value.startswith(("https://", "http://")),
                f"{key}.{name}",
                "an http:// or https:// URL",
            )
        require(
            not (self.discovery_url or self.jwks_uri) or bool(self.issuer),
            f"{key}.issuer",
            "the issuer's identifier when discovery_url or jwks_uri is set (every JWT's "
            "iss must equal it)",
        )
        require(
            not self.issuer or bool(self.audience),
            f"{key}.audience",
            "at least one audience when issuer is set (a token made for another service "
            "must not log in here)",
        )
        for i, alg in enumerate(self.algorithms):
            require(
                alg in ALLOWED_ALGORITHMS,
                f"{key}.algorithms[{i}]",
                "one of " + ", ".join(sorted(ALLOWED_ALGORITHMS)) + " (never none or HS*)",
            )
        require(bool(self.algorithms), f"{key}.algorithms", "at least one algorithm")
        for i, scope in enumerate(self.scope):
            require(bool(scope) and " " not in scope, f"{key}.scope[{i}]", "a scope without spaces")
        require(
            not self.introspection_url or bool(self.client_id),
            f"{key}.client_id",
            "the client id mailwarden introspects with when introspection_url is set",
        )
        # client_secret and client_secret_file: one or the other (build.check_pairs).
        require(0 <= self.leeway <= 600, f"{key}.leeway", "seconds from 0 to 600")
        for name in ("jwks_max_age", "jwks_refresh_interval", "timeout"):
            require(getattr(self, name) > 0, f"{key}.{name}", "a number of seconds > 0")
        require(
            self.introspection_cache_ttl >= 0,
            f"{key}.introspection_cache_ttl",
            "seconds >= 0 (0: no cache)",
        )
        require(
            self.introspection_cache_size >= 0,
            f"{key}.introspection_cache_size",
            "an integer >= 0 (0: no cache)",
        )
        require(
            self.max_response_bytes >= 1024,
            f"{key}.max_response_bytes",
            "an integer >= 1024",
        )
