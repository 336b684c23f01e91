"""Talking to the identity provider, without the talking: requests and answers as
values, the :class:`Transport` that carries them, and what each answer means.

The verifier (verifier.py) builds an :class:`HttpRequest`, a transport sends it
(``httpx_transport.py`` in the daemon, :class:`StaticTransport` in tests) and the
functions here read the :class:`HttpAnswer`. Every rule about the provider's HTTP
lives here, so the one about outages is in one place:

* a connection error or a timeout (the transport) and any 5xx answer, a body too
  large, not JSON or not the document the spec describes are a
  :class:`~mailwarden.errors.ProviderUnavailable`: the engine answers ``Unavailable``
  (Dovecot: ``temp_fail``), never a wrong token, and the guard counts nothing;
* an introspection answered 400 (the provider will not judge this token, e.g.
  oidc-provider for a JWT it issued) or 404 is a refused token, as Dovecot treats a 4xx;
* 401 and 403 to our introspection say the provider refused *our* client
  credentials: a misconfiguration, so ``Unavailable`` and an error in the log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from mailwarden.errors import ProviderUnavailable
from mailwarden.oauth2.claims import TokenRefused
from mailwarden.records import record


@record
class HttpRequest:
    """One request to the provider. ``form``: an urlencoded POST body (else GET);
    ``basic``: HTTP Basic credentials (client id, secret)."""

    url: str
    form: Mapping[str, str] | None = None
    basic: tuple[str, str] | None = None


@record
class HttpAnswer:
    """The provider's answer: status and the whole body."""

    status: int
    body: bytes


class Transport(Protocol):
    """Sends a request to the provider. Raises ProviderUnavailable when there is no
    answer (connection refused, timeout, body over the size limit)."""

    async def send(self, request: HttpRequest) -> HttpAnswer: ...

    async def aclose(self) -> None: ...


def _json(answer: HttpAnswer, what: str) -> dict[str, Any]:
    try:
        data = json.loads(answer.body)
    except (ValueError, RecursionError):
        raise ProviderUnavailable(f"{what}: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"{what}: the answer is not a JSON object")
    return data


def _document(answer: HttpAnswer, what: str) -> dict[str, Any]:
    """A GET's JSON object; anything but 200 means the provider cannot serve it now."""
    if answer.status != 200:
        raise ProviderUnavailable(f"{what}: HTTP {answer.status}")
    return _json(answer, what)


def jwks_uri_of(answer: HttpAnswer, issuer: str) -> str:
    """The ``jwks_uri`` of an OpenID Connect discovery document, which must name
    ``issuer`` as its own (OpenID Connect Discovery §4.3)."""
    data = _document(answer, "discovery")
    if data.get("issuer") != issuer:
        raise ProviderUnavailable(
            f"discovery: the document's issuer {str(data.get('issuer'))[:200]!r} is not "
            f"the configured {issuer!r}"
        )
    uri = data.get("jwks_uri")
    if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
        raise ProviderUnavailable("discovery: no jwks_uri")
    return uri


def jwks_of(answer: HttpAnswer) -> dict[str, Any]:
    """The JWKS document (``{"keys": [...]}``)."""
    data = _document(answer, "jwks")
    if not isinstance(data.get("keys"), list):
        raise ProviderUnavailable("jwks: no keys array")
    return data


def introspection_of(answer: HttpAnswer) -> dict[str, Any] | TokenRefused:
    """The claims of an RFC 7662 answer, or a refusal (the provider would not judge it)."""
    status = answer.status
    if status in (401, 403):
        raise ProviderUnavailable(
            f"introspection: HTTP {status}: the provider refused client_id/client_secret"
        )
    if status in (400, 404):
        return TokenRefused(reason=f"introspection: HTTP {status}")
    if status != 200:
        raise ProviderUnavailable(f"introspection: HTTP {status}")
    return _json(answer, "introspection")


def introspection_request(url: str, token: str, client_id: str, secret: str) -> HttpRequest:
    """RFC 7662 §2.1: POST the token, authenticated as the resource server's client
    (HTTP Basic, RFC 6749 §2.3.1)."""
    return HttpRequest(
        url=url,
        form={"token": token, "token_type_hint": "access_token"},
        basic=(client_id, secret),
    )


class StaticTransport:
    """A :class:`Transport` that answers from a table (URL -> answer or exception),
    recording what was asked: the in-memory provider for tests."""

    def __init__(self, answers: Mapping[str, HttpAnswer | Exception] | None = None) -> None:
        self.answers: dict[str, HttpAnswer | Exception] = dict(answers or {})
        self.sent: list[HttpRequest] = []

    def set_json(self, url: str, data: Any, status: int = 200) -> None:
        self.answers[url] = HttpAnswer(status=status, body=json.dumps(data).encode())

    async def send(self, request: HttpRequest) -> HttpAnswer:
        self.sent.append(request)
        answer = self.answers.get(request.url)
        if answer is None:
            raise ProviderUnavailable(f"{request.url}: connection refused")
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self) -> None:
        pass
