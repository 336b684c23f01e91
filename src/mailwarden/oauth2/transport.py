"""The daemon's :class:`~mailwarden.oauth2.provider.Transport`: httpx, and nothing more.

A thin adapter: it sends the request, reads at most ``max_response_bytes`` of the
answer and reports every failure to get one as
:class:`~mailwarden.errors.ProviderUnavailable`. What an answer means is decided by
provider.py. Redirects are not followed (the URLs are configured, not discovered
at random), and TLS certificates are checked against the system's CA store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from mailwarden.config import OAuth2Config
from mailwarden.config.secrets import read_secret
from mailwarden.errors import ProviderUnavailable
from mailwarden.oauth2.provider import HttpAnswer, HttpRequest
from mailwarden.oauth2.verifier import ProviderVerifier

USER_AGENT = "mailwarden-oauth2"


class HttpxTransport:
    """Sends provider requests with one pooled ``httpx.AsyncClient``."""

    def __init__(self, *, timeout: float, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    async def send(self, request: HttpRequest) -> HttpAnswer:
        # httpx (through anyio) keeps the current task across its waits, and a Dovecot
        # request runs inside its connection's task until its first wait
        # (frontends/dovecot_common.py, Connection.spawn): yield once, so that the
        # request is a task of its own before httpx starts.
        await asyncio.sleep(0)
        method = "GET" if request.form is None else "POST"
        try:
            async with self._client.stream(
                method,
                request.url,
                data=dict(request.form) if request.form is not None else None,
                auth=request.basic,
                headers={"Accept": "application/json"},
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ProviderUnavailable(
                            f"{request.url}: answer longer than {self.max_bytes} bytes"
                        )
                return HttpAnswer(status=response.status_code, body=bytes(body))
        except httpx.HTTPError as exc:
            # The message names the URL and the kind of failure, never a token: the
            # token travels in the body or a header, which httpx does not put there.
            raise ProviderUnavailable(f"{request.url}: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


def client_secret(config: OAuth2Config, resolve: Callable[[str], Path]) -> str:
    """``client_secret``, or the secret in ``client_secret_file`` (``resolve`` makes a
    config-relative path absolute; the one reader: config/secrets.py). ConfigError
    when it cannot be read."""
    if not config.client_secret_file:
        return config.client_secret
    return read_secret(config.client_secret_file, key="oauth2.client_secret_file", resolve=resolve)


def provider_verifier(config: OAuth2Config, resolve: Callable[[str], Path]) -> ProviderVerifier:
    """The verifier ``[oauth2]`` describes, over httpx (mailwarden.oauth2.open_verifier)."""
    return ProviderVerifier(
        config,
        HttpxTransport(timeout=config.timeout, max_bytes=config.max_response_bytes),
        client_secret=client_secret(config, resolve),
    )
