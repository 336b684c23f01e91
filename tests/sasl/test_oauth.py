"""XOAUTH2 and OAUTHBEARER: message formats from Google's document and RFC 7628."""

from __future__ import annotations

import base64
import json

import pytest

from mailwarden.model import BearerToken
from mailwarden.sasl.base import Challenge, Finished, MechanismFailed
from mailwarden.sasl.oauthbearer import OAuthBearer
from mailwarden.sasl.xoauth2 import XOAuth2


def test_xoauth2_of_the_reference_transcript_finishes_with_the_token_as_password() -> None:
    data = base64.b64decode("dXNlcj10b2sBYXV0aD1CZWFyZXIgeWEyOS50b2tlbnZhbHVlAQE=")
    step = XOAuth2().start(data)
    assert isinstance(step, Finished)
    assert (step.authcid, step.authzid) == ("tok", None)
    assert step.credentials == BearerToken("ya29.tokenvalue")


def test_xoauth2_failure_data_is_dovecots_json_challenge_byte_for_byte() -> None:
    step = XOAuth2().start(b"user=tok\x01auth=Bearer t\x01\x01")
    assert isinstance(step, Finished)
    reference = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0="
    assert step.failure_data == base64.b64decode(reference)
    assert json.loads(step.failure_data) == {"status": "401", "schemes": "bearer", "scope": "mail"}


def test_xoauth2_parses_googles_documented_example() -> None:
    data = (
        b"user=someuser@example.com\x01"
        b"auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
    )
    step = XOAuth2().start(data)
    assert isinstance(step, Finished)
    assert step.authcid == "someuser@example.com"
    assert step.credentials == BearerToken("ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")


def test_xoauth2_without_initial_response_asks_with_an_empty_challenge() -> None:
    mech = XOAuth2()
    assert mech.start(None) == Challenge(data=b"")
    assert isinstance(mech.respond(b"user=a\x01auth=bearer tok\x01\x01"), Finished)


@pytest.mark.parametrize(
    "data",
    [
        b"user=a\x01\x01",
        b"auth=Bearer tok\x01\x01",
        b"user=\x01auth=Bearer tok\x01\x01",
        b"user=a\x01auth=Basic dG9rOnB3\x01\x01",
        b"user=a\x01auth=Bearer \x01\x01",
        b"user=a\x01auth=Bearer to\rk\x01\x01",
        b"",
    ],
)
def test_xoauth2_without_a_user_or_a_valid_bearer_token_fails(data: bytes) -> None:
    assert isinstance(XOAuth2().start(data), MechanismFailed)


def test_oauthbearer_of_the_reference_transcript_names_the_user_in_the_gs2_header() -> None:
    data = base64.b64decode(
        "bixhPXRvaywBaG9zdD1tYWlsLmV4YW1wbGUuY29tAXBvcnQ9OTkzAWF1dGg9QmVhcmVyIHlhMjkudG9rZW52YWx1ZQEB"
    )
    step = OAuthBearer().start(data)
    assert isinstance(step, Finished)
    assert step.authcid == "tok"
    assert step.credentials == BearerToken("ya29.tokenvalue")
    assert step.failure_data == b'{"status":"invalid_token"}'


def test_oauthbearer_parses_the_rfc_7628_example() -> None:
    data = (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==\x01\x01"
    )
    step = OAuthBearer().start(data)
    assert isinstance(step, Finished)
    assert step.authcid == "user@example.com"
    assert step.credentials == BearerToken("vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==")


def test_oauthbearer_unescapes_the_gs2_username() -> None:
    step = OAuthBearer().start(b"y,a=a=2Cb=3Dc,\x01auth=Bearer t\x01\x01")
    assert isinstance(step, Finished)
    assert step.authcid == "a,b=c"


@pytest.mark.parametrize(
    "data",
    [
        b"p=tls-unique,a=u,\x01auth=Bearer t\x01\x01",  # channel binding
        b"F,n,a=u,\x01auth=Bearer t\x01\x01",  # non-standard
        b"n,a=u=2,\x01auth=Bearer t\x01\x01",  # bad escape
        b"n,x=u,\x01auth=Bearer t\x01\x01",
        b"n,,\x01auth=Bearer t\x01\x01",  # no user
        b"n,a=u,\x01\x01",  # no token
        b"n,a=u,\x01auth=Bearer\x01\x01",
        b"\x01auth=Bearer t\x01\x01",
        b"",
    ],
)
def test_oauthbearer_refuses_bad_gs2_headers_and_missing_parts(data: bytes) -> None:
    assert isinstance(OAuthBearer().start(data), MechanismFailed)
