"""Properties every mechanism shares: the registry, the MECH flags, and robustness."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.model import BearerToken, Password
from mailwarden.sasl import MECHANISMS
from mailwarden.sasl.base import (
    Challenge,
    Finished,
    Mechanism,
    MechanismContext,
    MechanismFailed,
    NeedCredentials,
    Step,
)
from mailwarden.sasl.plain import Plain
from tests.sasl.clients import ScramClient, scram_stored

# Reference §1.2: the MECH flags of every mechanism Dovecot 2.3 registers.
DOVECOT_FLAGS = {
    "PLAIN": ("plaintext",),
    "LOGIN": ("plaintext",),
    "CRAM-MD5": ("dictionary", "active"),
    "DIGEST-MD5": ("dictionary", "active", "mutual-auth"),
    "SCRAM-SHA-1": ("mutual-auth",),
    "SCRAM-SHA-256": ("mutual-auth",),
    "ANONYMOUS": ("anonymous",),
    "EXTERNAL": (),
    "APOP": ("private", "dictionary", "active"),
    "OAUTHBEARER": ("plaintext",),
    "XOAUTH2": ("plaintext",),
}


def test_the_registry_holds_every_mechanism_under_its_own_name() -> None:
    assert set(MECHANISMS) == set(DOVECOT_FLAGS)
    for name, cls in MECHANISMS.items():
        assert cls.name == name


@pytest.mark.parametrize("name", sorted(DOVECOT_FLAGS))
def test_each_mechanism_advertises_the_flags_dovecot_advertises(name: str) -> None:
    assert MECHANISMS[name].flag_words() == DOVECOT_FLAGS[name]


def test_responding_before_a_challenge_is_a_caller_bug() -> None:
    mech = Plain()
    with pytest.raises(RuntimeError):
        mech.respond(b"x")
    mech.start(b"\0a\0b")
    assert mech.done
    with pytest.raises(RuntimeError):
        mech.respond(b"x")
    with pytest.raises(RuntimeError):
        mech.start(None)


def test_providing_credentials_nobody_asked_for_is_a_caller_bug() -> None:
    mech = Plain()
    mech.start(None)
    with pytest.raises(RuntimeError):
        mech.provide_credentials(b"secret")


VALID_CREDENTIALS = {
    "PLAIN": b"secret",
    "CRAM-MD5": b"\x01" * 32,
    "DIGEST-MD5": b"\x02" * 16,
    "SCRAM-SHA-1": scram_stored("sha1", b"secret", b"salt", 4096),
    "SCRAM-SHA-256": scram_stored("sha256", b"secret", b"salt", 4096),
}

# Prefixes that get random data past the first parser of each mechanism.
SEEDS = [
    b"",
    b"\0alice\0",
    b"n,,n=alice,r=",
    b"c=biws,r=",
    b'username="alice",nonce="',
    b"user=alice\x01auth=Bearer ",
    b"n,a=alice,\x01auth=Bearer ",
    b"<0.0.0.x>\0alice\0",
    b"alice ",
]
client_data = st.builds(
    lambda seed, tail: seed + tail, st.sampled_from(SEEDS), st.binary(max_size=80)
)


@settings(max_examples=300)
@given(
    name=st.sampled_from(sorted(MECHANISMS)),
    initial=st.none() | client_data,
    feed=st.lists(st.tuples(client_data, st.booleans()), max_size=6),
)
def test_any_client_data_yields_a_step_and_never_raises(
    name: str, initial: bytes | None, feed: list[tuple[bytes, bool]]
) -> None:
    mech: Mechanism = MECHANISMS[name](MechanismContext(cert_username="alice"))
    step: Step = mech.start(initial)
    for data, use_valid_credentials in feed:
        assert isinstance(step, Challenge | NeedCredentials | Finished | MechanismFailed)
        if isinstance(step, Challenge):
            step = mech.respond(data)
        elif isinstance(step, NeedCredentials):
            creds = VALID_CREDENTIALS.get(step.scheme, data)
            step = mech.provide_credentials(creds if use_valid_credentials else data)
        else:
            break
    proof = step.credentials if isinstance(step, Finished) else None
    if proof is not None and not isinstance(proof, Password | BearerToken):
        for scheme in proof.schemes:
            assert proof.check(scheme, initial or b"") in (True, False)


@settings(max_examples=200)
@given(name=st.sampled_from(sorted(MECHANISMS)), data=st.binary(max_size=300))
def test_base64_shaped_garbage_is_handled_like_any_other_data(name: str, data: bytes) -> None:
    mech = MECHANISMS[name]()
    step = mech.start(base64.b64encode(data))
    assert isinstance(step, Challenge | NeedCredentials | Finished | MechanismFailed)


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Apply (position, delete-count, insert) edits, positions taken modulo the length."""
    for position, delete, insert in edits:
        at = position % (len(data) + 1)
        data = data[:at] + insert + data[at + delete :]
    return data


edit_lists = st.lists(
    st.tuples(st.integers(0, 500), st.integers(0, 3), st.binary(max_size=3)), max_size=4
)


@settings(max_examples=200)
@given(edits=edit_lists, sha1=st.booleans())
def test_mutated_scram_final_messages_yield_a_step(
    edits: list[tuple[int, int, bytes]], sha1: bool
) -> None:
    hash_name = "sha1" if sha1 else "sha256"
    mech = MECHANISMS["SCRAM-SHA-1" if sha1 else "SCRAM-SHA-256"]()
    client = ScramClient(hash_name, "alice", b"secret", "cnonce")
    mech.start(client.first())
    server_first = mech.provide_credentials(VALID_CREDENTIALS[mech.name])
    assert isinstance(server_first, Challenge)
    final, _ = client.final(server_first.data)
    step = mech.respond(mutate(final, edits))
    assert isinstance(step, Finished | MechanismFailed)
    if not edits:
        assert isinstance(step, Finished)


@settings(max_examples=200)
@given(edits=edit_lists)
def test_mutated_digest_md5_responses_yield_a_step(edits: list[tuple[int, int, bytes]]) -> None:
    mech = MECHANISMS["DIGEST-MD5"]()
    challenge = mech.start(None)
    assert isinstance(challenge, Challenge)
    nonce = challenge.data.split(b'nonce="')[1].split(b'"')[0]
    response = (
        b'username="alice",realm="example.org",nonce="' + nonce + b'",cnonce="c",nc=00000001,'
        b'qop=auth,digest-uri="imap/mx",response=' + b"0" * 32
    )
    step = mech.respond(mutate(response, edits))
    if isinstance(step, NeedCredentials):
        step = mech.provide_credentials(VALID_CREDENTIALS["DIGEST-MD5"])
    assert isinstance(step, Finished | MechanismFailed)
    if not edits:
        assert isinstance(step, Finished)
