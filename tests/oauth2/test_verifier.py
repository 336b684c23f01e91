"""Local JWT validation and introspection, against keys made here and the package's
in-memory provider (StaticTransport): every refusal the issue lists, the key set's
cache and refresh, and outages as temporary failures."""

from __future__ import annotations

import asyncio
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey

from mailwarden.errors import ProviderUnavailable
from mailwarden.oauth2.claims import TokenIdentity, TokenRefused
from mailwarden.oauth2.provider import HttpAnswer, StaticTransport
from mailwarden.oauth2.signatures import KeyRing
from mailwarden.oauth2.verifier import ProviderVerifier
from tests.oauth2.issuer import (
    DISCOVERY,
    INTROSPECTION,
    JWKS,
    NOW,
    Clock,
    b64,
    claims,
    jwks,
    key,
    provider,
    sign,
    tampered,
    unsigned,
    verifier,
)

ALICE = TokenIdentity(username="alice@example.com", subject="5f1c-alice", expires_at=NOW + 600)


def refused(result: TokenIdentity | TokenRefused) -> str:
    assert isinstance(result, TokenRefused), result
    return result.reason


@pytest.mark.parametrize(
    ("kind", "alg"), [("RSA", "RS256"), ("RSA", "PS256"), ("EC", "ES256"), ("OKP", "EdDSA")]
)
async def test_a_token_signed_with_an_allowed_algorithm_is_accepted(kind: str, alg: str) -> None:
    signer = key(kind, f"k-{kind}")
    v = verifier(provider(signer))
    assert await v.verify(sign(claims(), signer, alg)) == ALICE


async def test_the_keys_come_from_the_jwks_uri_that_discovery_names() -> None:
    signer = key("RSA", "k1")
    transport = provider(signer)
    await verifier(transport).verify(sign(claims(), signer))
    assert [r.url for r in transport.sent] == [DISCOVERY, JWKS]


async def test_a_configured_jwks_uri_skips_discovery() -> None:
    signer = key("RSA", "k1")
    transport = provider(signer)
    assert await verifier(transport, jwks_uri=JWKS).verify(sign(claims(), signer)) == ALICE
    assert [r.url for r in transport.sent] == [JWKS]


async def test_discovery_of_another_issuer_is_not_believed() -> None:
    signer = key("RSA", "k1")
    transport = provider(signer)
    transport.set_json(DISCOVERY, {"issuer": "https://evil.example.test/", "jwks_uri": JWKS})
    with pytest.raises(ProviderUnavailable, match="issuer"):
        await verifier(transport).verify(sign(claims(), signer))


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"exp": int(NOW) - 60}, "expired"),
        ({"aud": "https://webmail.example.test/"}, "wrong audience"),
        ({"iss": "https://evil.example.test/"}, "wrong issuer"),
    ],
)
async def test_a_validly_signed_token_that_breaks_a_claims_rule_is_refused(
    changes: dict[str, object], why: str
) -> None:
    signer = key("RSA", "k1")
    assert refused(await verifier(provider(signer)).verify(sign(claims(**changes), signer))) == why


async def test_a_tampered_token_is_refused() -> None:
    signer = key("RSA", "k1")
    token = tampered(sign(claims(email="mallory@example.com"), signer), email="alice@example.com")
    assert refused(await verifier(provider(signer)).verify(token)).startswith("signature not valid")


async def test_an_unsigned_token_alg_none_is_refused_before_any_key_is_fetched() -> None:
    transport = provider(key("RSA", "k1"))
    result = await verifier(transport).verify(unsigned(claims()))
    assert refused(result) == "algorithm 'none' not allowed"
    assert transport.sent == []


async def test_an_hmac_token_is_refused_even_keyed_with_the_published_public_key() -> None:
    """RFC 8725 §2.1: the RSA public key as an HS256 secret would verify anyone's token.
    Made by hand: joserfc itself refuses a public key as an HMAC secret."""
    signer = key("RSA", "k1")
    assert isinstance(signer, RSAKey)
    pem = signer.as_pem(private=False)
    head = b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.digest(pem, f"{head}.{body}".encode(), "sha256")
    forged = f"{head}.{body}.{b64(mac)}"
    assert refused(await verifier(provider(signer)).verify(forged)) == (
        "algorithm 'HS256' not allowed"
    )


async def test_an_algorithm_left_out_of_the_allow_list_is_refused() -> None:
    signer = key("EC", "k-ec")
    v = verifier(provider(signer), algorithms=("RS256",))
    assert (
        refused(await v.verify(sign(claims(), signer, "ES256"))) == "algorithm 'ES256' not allowed"
    )


async def test_a_key_is_used_only_with_its_own_type_of_algorithm() -> None:
    """An RS256 header cannot make the verifier use an EC key of the same kid."""
    ec = key("EC", "shared")
    rsa = key("RSA", "shared")
    token = sign(claims(), rsa, "RS256")
    assert refused(await verifier(provider(ec)).verify(token)).startswith("no key 'shared'")


async def test_a_token_signed_by_a_key_the_issuer_does_not_publish_is_refused() -> None:
    published, other = key("RSA", "k1"), key("RSA", "k2")
    forged = sign(claims(), other, kid="k1")
    assert refused(await verifier(provider(published)).verify(forged)).startswith(
        "signature not valid"
    )


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "ey.ey.ey", "é.x.y", "x" * 20000])
async def test_garbage_is_refused_never_raised(token: str) -> None:
    transport = provider(key("RSA", "k1"))
    assert isinstance(await verifier(transport).verify(token), TokenRefused)


async def test_a_key_rotation_is_picked_up_on_the_first_unknown_kid() -> None:
    old, new = key("RSA", "old"), key("RSA", "new")
    clock = Clock()
    transport = provider(old)
    v = verifier(transport, clock)
    assert await v.verify(sign(claims(), old)) == ALICE
    transport.set_json(JWKS, jwks(old, new))  # the provider rotates
    clock.now += 61  # past the refresh interval since the keys were fetched
    assert await v.verify(sign(claims(), new)) == ALICE
    assert [r.url for r in transport.sent].count(JWKS) == 2


async def test_unknown_kids_fetch_the_keys_at_most_once_per_refresh_interval() -> None:
    signer = key("RSA", "k1")
    stranger = key("RSA", "k-unknown")
    clock = Clock()
    transport = provider(signer)
    v = verifier(transport, clock)
    assert await v.verify(sign(claims(), signer)) == ALICE
    clock.now += 61
    for _ in range(5):
        assert refused(await v.verify(sign(claims(), stranger))).startswith("no key")
    assert [r.url for r in transport.sent].count(JWKS) == 2
    clock.now += 61
    await v.verify(sign(claims(), stranger))
    assert [r.url for r in transport.sent].count(JWKS) == 3


async def test_concurrent_unknown_kids_share_one_fetch() -> None:
    signer, stranger = key("RSA", "k1"), key("RSA", "k-unknown")
    clock = Clock()
    transport = provider(signer)
    v = verifier(transport, clock)
    await v.verify(sign(claims(), signer))
    clock.now += 61
    token = sign(claims(), stranger)
    await asyncio.gather(*(v.verify(token) for _ in range(10)))
    assert [r.url for r in transport.sent].count(JWKS) == 2


async def test_the_keys_are_fetched_again_when_older_than_their_max_age() -> None:
    signer = key("RSA", "k1")
    clock = Clock()
    transport = provider(signer)
    v = verifier(transport, clock, jwks_max_age=600.0)
    token = sign(claims(exp=int(NOW) + 10_000), signer)
    await v.verify(token)
    clock.now += 300
    await v.verify(token)
    assert [r.url for r in transport.sent].count(JWKS) == 1
    clock.now += 301
    await v.verify(token)
    assert [r.url for r in transport.sent].count(JWKS) == 2


@pytest.mark.parametrize(
    "answer",
    [
        ProviderUnavailable("connection refused"),
        HttpAnswer(status=503, body=b"down"),
        HttpAnswer(status=200, body=b"<html>"),
        HttpAnswer(status=200, body=b'{"no": "keys"}'),
    ],
)
async def test_keys_that_cannot_be_fetched_make_the_token_unavailable_not_refused(
    answer: HttpAnswer | Exception,
) -> None:
    signer = key("RSA", "k1")
    transport = provider(signer)
    transport.answers[JWKS] = answer
    with pytest.raises(ProviderUnavailable):
        await verifier(transport).verify(sign(claims(), signer))


async def test_keys_held_keep_serving_while_a_refresh_fails() -> None:
    signer, new = key("RSA", "k1"), key("RSA", "k-new")
    clock = Clock()
    transport = provider(signer)
    v = verifier(transport, clock)
    await v.verify(sign(claims(), signer))
    transport.answers[JWKS] = ProviderUnavailable("down")
    clock.now += 61
    assert refused(await v.verify(sign(claims(), new))).startswith("no key")
    assert await v.verify(sign(claims(), signer)) == ALICE


def test_a_published_set_yields_only_asymmetric_signing_keys() -> None:
    rsa = key("RSA", "k1").as_dict(private=False)
    ring = KeyRing.from_jwks(
        {
            "keys": [
                rsa,
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                {**key("EC", "enc").as_dict(private=False), "use": "enc"},
                {"kty": "RSA", "kid": "broken", "n": "x"},
                "junk",
            ]
        }
    )
    assert ring.kids == ("k1",)
    assert KeyRing.from_jwks({"keys": "x"}).keys == ()
    assert KeyRing.from_jwks([1, 2]).keys == ()


# ------------------------------------------------------------------ introspection


def introspecting(
    answer: dict[str, object] | HttpAnswer | Exception, clock: Clock | None = None
) -> tuple[StaticTransport, ProviderVerifier]:
    transport = provider(key("RSA", "k1"))
    if isinstance(answer, dict):
        transport.set_json(INTROSPECTION, answer)
    else:
        transport.answers[INTROSPECTION] = answer
    v = verifier(
        transport,
        clock,
        introspection_url=INTROSPECTION,
        client_id="mailwarden",
        client_secret="s3cret",
    )
    return transport, v


ACTIVE = {**claims(), "active": True}


async def test_an_opaque_token_is_introspected_with_the_client_credentials() -> None:
    transport, v = introspecting(ACTIVE)
    assert await v.verify("opaque-token-1") == ALICE
    (request,) = transport.sent
    assert request.url == INTROSPECTION
    assert request.basic == ("mailwarden", "s3cret")
    assert request.form == {"token": "opaque-token-1", "token_type_hint": "access_token"}


async def test_an_active_answer_is_remembered_until_the_token_expires() -> None:
    clock = Clock()
    transport, v = introspecting({**ACTIVE, "exp": int(NOW) + 100}, clock)
    for _ in range(3):
        assert isinstance(await v.verify("opaque-token-1"), TokenIdentity)
    assert len(transport.sent) == 1
    clock.now += 131  # past exp and the 30 s leeway
    assert refused(await v.verify("opaque-token-1")) == "expired"
    assert len(transport.sent) == 2


async def test_a_remembered_answer_lasts_no_longer_than_the_cache_ttl() -> None:
    clock = Clock()
    transport, v = introspecting(ACTIVE, clock)
    await v.verify("opaque-token-1")
    clock.now += 301
    await v.verify("opaque-token-1")
    assert len(transport.sent) == 2


async def test_an_inactive_token_is_refused_and_not_remembered() -> None:
    transport, v = introspecting({"active": False})
    assert refused(await v.verify("opaque-token-1")).startswith("inactive")
    assert refused(await v.verify("opaque-token-1")).startswith("inactive")
    assert len(transport.sent) == 2


async def test_a_token_the_provider_will_not_judge_is_refused() -> None:
    answer = HttpAnswer(status=400, body=json.dumps({"error": "unsupported_token_type"}).encode())
    _, v = introspecting(answer)
    assert refused(await v.verify("opaque-token-1")) == "introspection: HTTP 400"


@pytest.mark.parametrize(
    "answer",
    [
        ProviderUnavailable("timeout"),
        HttpAnswer(status=500, body=b""),
        HttpAnswer(status=502, body=b"bad gateway"),
        HttpAnswer(status=401, body=b'{"error":"invalid_client"}'),
        HttpAnswer(status=200, body=b"not json"),
    ],
)
async def test_an_introspection_outage_is_unavailable_not_a_refusal(
    answer: HttpAnswer | Exception,
) -> None:
    _, v = introspecting(answer)
    with pytest.raises(ProviderUnavailable):
        await v.verify("opaque-token-1")


async def test_a_jwt_is_validated_locally_and_never_sent_to_introspection() -> None:
    signer = key("RSA", "k1")
    transport, v = introspecting(ACTIVE)
    transport.set_json(JWKS, jwks(signer))
    assert await v.verify(sign(claims(), signer)) == ALICE
    assert INTROSPECTION not in [r.url for r in transport.sent]


async def test_without_an_introspection_url_an_opaque_token_is_refused() -> None:
    transport = provider(key("RSA", "k1"))
    assert refused(await verifier(transport).verify("opaque")).startswith("not a JWT")
    assert transport.sent == []


async def test_introspection_alone_needs_no_issuer() -> None:
    transport, _ = introspecting(ACTIVE)
    v = verifier(
        transport,
        issuer="",
        audience=(),
        introspection_url=INTROSPECTION,
        client_id="mailwarden",
    )
    assert isinstance(await v.verify(sign(claims(), key("RSA", "k1"))), TokenIdentity)
    assert [r.url for r in transport.sent] == [INTROSPECTION]


# ------------------------------------------------------------------ any input

B64 = st.from_regex(r"[A-Za-z0-9_-]{0,60}", fullmatch=True)
HEADER_VALUES = st.none() | st.integers() | st.text(max_size=10) | st.sampled_from(["RS256", "k1"])
SHAPED = st.builds(
    lambda alg, kid, body, sig: (
        f"{b64(json.dumps({'alg': alg, 'kid': kid}).encode())}.{body}.{sig}"
    ),
    HEADER_VALUES,
    HEADER_VALUES,
    B64,
    B64,
)


NOT_AN_OBJECT = st.builds(
    lambda head, body: f"{b64(json.dumps(head).encode())}.{body}.c2ln",
    st.sampled_from(["alg", "xalgx", ["alg"], 3, None]) | st.text(max_size=10),
    B64,
)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200) | st.tuples(B64, B64, B64).map(".".join) | SHAPED | NOT_AN_OBJECT)
def test_any_token_is_judged_never_raised(token: str) -> None:
    v = verifier(provider(key("RSA", "k1")))
    assert isinstance(asyncio.run(v.verify(token)), TokenIdentity | TokenRefused)
