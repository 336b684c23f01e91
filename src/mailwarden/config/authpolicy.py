"""``[authpolicy]``: the Dovecot auth-policy server on the HTTP listener (docs/policy-server.md)."""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.config.build import Section, require


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthPolicyConfig(Section):
    """``[authpolicy]``: answers Dovecot's ``auth_policy_server_url`` from the guard."""

    enabled: bool = False
    path: str = "/api/v1/dovecot/policy"
    api_header: str = "X-API-Key"
    api_key: str = ""
    api_key_file: str = ""
    login_attribute: str = "login"
    remote_attribute: str = "remote"
    pwhash_attribute: str = "pwhash"
    protocol_attribute: str = "protocol"
    mechanism_attribute: str = "mech"
    reject_message: str = ""

    def check(self, key: str) -> None:
        require(
            self.path.startswith("/")
            and "?" not in self.path
            and not (self.path == "/ui" or self.path.startswith("/ui/")),
            f"{key}.path",
            "a path such as /api/v1/dovecot/policy (not under /ui)",
        )
        require(
            bool(self.api_header) and ":" not in self.api_header and " " not in self.api_header,
            f"{key}.api_header",
            "a header name such as X-API-Key",
        )
        # Secure by default: a policy server open to anyone lets anyone report
        # failures in a victim's name (banning its network) or probe the bans.
        require(
            not self.enabled or bool(self.api_key or self.api_key_file),
            f"{key}.api_key",
            "set (or api_key_file) when the policy server is enabled",
        )
        for name in ("login", "remote", "pwhash", "protocol", "mechanism"):
            value = getattr(self, f"{name}_attribute")
            require(
                bool(value) and not any(c in value for c in " =/"),
                f"{key}.{name}_attribute",
                "a key of auth_policy_request_attributes (no space, = or /)",
            )
