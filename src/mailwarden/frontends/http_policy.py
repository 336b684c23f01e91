"""The Dovecot auth-policy route of the HTTP API (``[authpolicy]``, docs/policy-server.md).

What belongs here: checking the caller's key, reading the body with the HTTP API's
size limit, and handing the request parsed by protocols/dovecot_policy.py to
auth/policyserver.py; then the log line, the metric and the reply. No decision
and no wire format lives here.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from mailwarden.auth.policyserver import PolicyServer
from mailwarden.config import AuthPolicyConfig
from mailwarden.config.secrets import read_secret
from mailwarden.frontends.asgi import Receive, Scope
from mailwarden.frontends.httpconn import read_body
from mailwarden.metrics import Metrics
from mailwarden.protocols import dovecot_policy as policy
from mailwarden.protocols import nauthilus as proto
from mailwarden.protocols.http_api import Reply

log = logging.getLogger("mailwarden.policy")


def read_api_key(config: AuthPolicyConfig, resolve: Callable[[str], Path]) -> str:
    """``api_key``, or the secret in ``api_key_file`` (already read into ``api_key``
    when the config came from ``confignames.load``; read here by the one secret-file
    reader, config/secrets.py, when it did not)."""
    if not config.api_key_file:
        return config.api_key
    return read_secret(config.api_key_file, key="authpolicy.api_key_file", resolve=resolve)


class PolicyRoute:
    """``POST <authpolicy.path>?command=allow|report``."""

    def __init__(
        self,
        server: PolicyServer,
        config: AuthPolicyConfig,
        *,
        resolve: Callable[[str], Path] = Path,
        metrics: Metrics | None = None,
    ) -> None:
        self.server = server
        self.metrics = metrics
        self.apply(config, resolve)

    def apply(self, config: AuthPolicyConfig, resolve: Callable[[str], Path] = Path) -> None:
        """Take ``config`` (at start and on SIGHUP); an unreadable key file is a ConfigError."""
        key = read_api_key(config, resolve) if config.enabled else ""
        self.config = config
        self._key = key.encode()
        self._header = config.api_header.lower()
        self.names = policy.AttributeNames(
            login=config.login_attribute,
            remote=config.remote_attribute,
            pwhash=config.pwhash_attribute,
            protocol=config.protocol_attribute,
            mechanism=config.mechanism_attribute,
        )
        self.server.reject_message = config.reject_message

    def serves(self, path: str) -> bool:
        return self.config.enabled and path == self.config.path

    def _caller_ok(self, headers: Mapping[str, str]) -> bool:
        given = headers.get(self._header)
        if given is None or not self._key:
            return False
        return hmac.compare_digest(given.strip().encode(), self._key)

    async def answer(
        self,
        scope: Scope,
        headers: Mapping[str, str],
        receive: Receive,
        session: str,
        *,
        max_body: int,
    ) -> Reply:
        """The reply to one policy request; ProtocolError (400) and BodyTooLarge
        (413) are the caller's to answer."""
        if (refused := proto.method_refusal(scope["method"], ("POST",))) is not None:
            return refused
        if not self._caller_ok(headers):
            return proto.error_reply(
                401, f"the policy server needs the configured {self.config.api_header} header"
            )
        command = policy.parse_command(scope.get("query_string", b""))
        request = policy.parse_request(command, await read_body(receive, max_body), self.names)
        outcome: str
        if command is policy.Command.ALLOW:
            outcome, verdict = await self.server.allow(request)
            reply = policy.verdict_reply(verdict)
            status = verdict.status
        else:
            outcome = await self.server.report(request)
            reply = policy.report_reply()
            status = 0
        log.info(
            "session=%s policy %s user=%r service=%s client=%s: %s (status %d)",
            session,
            command.value,
            request.login,
            request.protocol or "-",
            request.remote or "-",
            outcome,
            status,
        )
        if self.metrics is not None:
            self.metrics.policy(command.value, outcome)
        return reply
