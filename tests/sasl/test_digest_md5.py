"""DIGEST-MD5 against RFC 2831's worked example and Dovecot's parsing rules."""

from __future__ import annotations

import re

import pytest

from mailwarden.sasl.base import (
    Challenge,
    Finished,
    MechanismContext,
    MechanismFailed,
    NeedCredentials,
)
from mailwarden.sasl.digest_md5 import DigestMd5, DigestMd5Proof, parse_directives
from tests.sasl.clients import digest_md5_ha1, digest_md5_values, dovecot_digest_credentials, proof

RFC_NONCE = "OA6MG9tEQGm2hh"
RFC_RESPONSE = (
    b'charset=utf-8,username="chris",realm="elwood.innosoft.com",'
    b'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
    b'digest-uri="imap/elwood.innosoft.com",response=d388dad90d4bbd760a152321f2143af7,qop=auth'
)


class FixedNonce(DigestMd5):
    """The mechanism with RFC 2831 §4's server nonce, to replay its example."""

    def _nonce(self) -> str:
        return RFC_NONCE


def rfc_exchange() -> tuple[FixedNonce, NeedCredentials]:
    mech = FixedNonce(MechanismContext(realms=("elwood.innosoft.com",)))
    mech.start(None)
    need = mech.respond(RFC_RESPONSE)
    assert isinstance(need, NeedCredentials)
    return mech, need


def test_the_rfc_2831_example_asks_for_user_at_realm_credentials() -> None:
    _, need = rfc_exchange()
    assert need == NeedCredentials(username="chris@elwood.innosoft.com", scheme="DIGEST-MD5")


def test_the_rfc_2831_example_gives_its_rspauth_and_a_proof_that_verifies() -> None:
    mech, need = rfc_exchange()
    ha1 = dovecot_digest_credentials(need.username, b"secret")
    step = mech.provide_credentials(ha1)
    assert isinstance(step, Finished)
    assert step.success_data == b"rspauth=ea40f60335c427b5527b84dbabcdfffd"
    assert step.authcid == "chris@elwood.innosoft.com"
    assert isinstance(step.credentials, DigestMd5Proof)
    assert proof(step).check("DIGEST-MD5", ha1)
    assert proof(step).check("DIGEST-MD5", ha1.hex().encode())
    assert proof(step).check("PLAIN", b"secret")


def test_the_rfc_2831_example_does_not_verify_with_another_password() -> None:
    mech, need = rfc_exchange()
    step = mech.provide_credentials(dovecot_digest_credentials(need.username, b"secret"))
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert not proof(step).check("DIGEST-MD5", digest_md5_ha1("chris", "elwood.innosoft.com", b"x"))
    assert not proof(step).check("PLAIN", b"wrong")
    assert not proof(step).check("DIGEST-MD5", b"short")


def test_the_challenge_is_worded_as_dovecot_words_it() -> None:
    step = FixedNonce(MechanismContext(realms=("a.example", "b.example"))).start(None)
    assert step == Challenge(
        data=b'realm="a.example",realm="b.example",nonce="OA6MG9tEQGm2hh",'
        b'qop="auth",charset="utf-8",algorithm="md5-sess"'
    )


def test_without_configured_realms_the_challenge_offers_an_empty_realm() -> None:
    step = DigestMd5().start(None)
    assert isinstance(step, Challenge)
    assert re.fullmatch(
        rb'realm="",nonce="[A-Za-z0-9+/]{22}==",qop="auth",charset="utf-8",algorithm="md5-sess"',
        step.data,
    )


def client_response(nonce: str, extra: dict[str, str] | None = None) -> bytes:
    extra = extra or {}
    password = b"secret"
    ha1 = digest_md5_ha1("alice", "", password)
    response, _ = digest_md5_values(
        ha1=ha1, nonce=nonce, cnonce="cn0nce", digest_uri="smtp/mx", authzid=extra.get("authzid")
    )
    fields = {
        "username": '"alice"',
        "nonce": f'"{nonce}"',
        "cnonce": '"cn0nce"',
        "nc": "00000001",
        "qop": "auth",
        "digest-uri": '"smtp/mx"',
        "response": response,
    }
    fields.update(extra)
    if "authzid" in extra:
        fields["authzid"] = f'"{extra["authzid"]}"'
    return ",".join(f"{k}={v}" for k, v in fields.items()).encode()


def nonce_of(step: object) -> str:
    assert isinstance(step, Challenge)
    match = re.search(rb'nonce="([^"]+)"', step.data)
    assert match is not None
    return match.group(1).decode()


def test_a_response_without_a_realm_looks_up_the_bare_username() -> None:
    mech = DigestMd5()
    nonce = nonce_of(mech.start(None))
    need = mech.respond(client_response(nonce))
    assert need == NeedCredentials(username="alice", scheme="DIGEST-MD5")
    step = mech.provide_credentials(digest_md5_ha1("alice", "", b"secret"))
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert proof(step).check("PLAIN", b"secret")


def test_an_authzid_takes_part_in_the_digest_and_is_reported() -> None:
    mech = DigestMd5()
    nonce = nonce_of(mech.start(None))
    mech.respond(client_response(nonce, {"authzid": "bob"}))
    step = mech.provide_credentials(digest_md5_ha1("alice", "", b"secret"))
    assert isinstance(step, Finished)
    assert step.authzid == "bob"
    assert step.credentials is not None
    assert proof(step).check("PLAIN", b"secret")


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"nc": "00000002"}, "re-authentication"),
        ({"qop": "auth-int"}, "integrity layer"),
        ({"qop": "auth-bogus"}, "unknown qop"),
        ({"charset": "iso-8859-1"}, "charset"),
        ({"nonce": '"forged"'}, "nonce"),
        ({"cnonce": '""'}, "empty cnonce"),
        ({"username": '""'}, "empty username"),
        ({"response": "abc"}, "short response"),
        ({"digest-uri": '"nohost"'}, "digest-uri without host"),
        ({"maxbuf": "0"}, "maxbuf zero"),
    ],
)
def test_unacceptable_directives_fail_the_request(extra: dict[str, str], why: str) -> None:
    mech = DigestMd5()
    nonce = nonce_of(mech.start(None))
    assert isinstance(mech.respond(client_response(nonce, extra)), MechanismFailed), why


def test_a_duplicated_username_fails_the_request() -> None:
    mech = DigestMd5()
    nonce = nonce_of(mech.start(None))
    data = client_response(nonce) + b',username="mallory"'
    assert isinstance(mech.respond(data), MechanismFailed)


@pytest.mark.parametrize("missing", ["nonce", "cnonce", "username", "response"])
def test_a_missing_required_directive_fails_the_request(missing: str) -> None:
    mech = DigestMd5()
    nonce = nonce_of(mech.start(None))
    items = client_response(nonce).split(b",")
    data = b",".join(i for i in items if not i.startswith(missing.encode() + b"="))
    assert isinstance(mech.respond(data), MechanismFailed)


def test_an_empty_response_fails_the_request() -> None:
    mech = DigestMd5()
    mech.start(None)
    assert isinstance(mech.respond(b""), MechanismFailed)


def test_malformed_stored_credentials_fail_the_request() -> None:
    mech = DigestMd5()
    nonce = nonce_of(mech.start(None))
    mech.respond(client_response(nonce))
    step = mech.provide_credentials(b"not sixteen bytes")
    assert isinstance(step, MechanismFailed)
    assert step.user == "alice"


def test_directives_are_read_as_dovecot_reads_them() -> None:
    pairs = parse_directives(' Realm = "a\\"b" ,junk,nc= 01 ,,cipher=rc4, qop=auth ')
    assert pairs == [("realm", 'a"b'), ("nc", " 01"), ("cipher", "rc4"), ("qop", "auth")]


def test_an_unterminated_quoted_value_runs_to_the_end() -> None:
    assert parse_directives('username="alice') == [("username", "alice")]
