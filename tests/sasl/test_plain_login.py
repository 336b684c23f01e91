"""PLAIN and LOGIN: the password travels; the mechanism only splits it out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.model import Password
from mailwarden.sasl import MECHANISMS
from mailwarden.sasl.base import Challenge, Finished, MechanismContext, MechanismFailed
from mailwarden.sasl.login import Login
from mailwarden.sasl.plain import Plain


def test_plain_with_an_initial_response_finishes_at_once() -> None:
    step = Plain().start(b"\0alice\0secret")
    assert step == Finished(authcid="alice", authzid=None, credentials=Password(b"secret"))


def test_plain_without_an_initial_response_sends_an_empty_challenge_first() -> None:
    mech = Plain()
    assert mech.start(None) == Challenge(data=b"")
    step = mech.respond(b"alice\0alice\0secret")
    assert step == Finished(authcid="alice", authzid=None, credentials=Password(b"secret"))


def test_plain_authzid_equal_to_authcid_is_no_master_login() -> None:
    step = Plain().start(b"alice\0alice\0secret")
    assert isinstance(step, Finished)
    assert step.authzid is None


def test_plain_authzid_different_from_authcid_is_kept_for_a_master_login() -> None:
    step = Plain().start(b"alice\0admin\0masterpw")
    assert step == Finished(authcid="admin", authzid="alice", credentials=Password(b"masterpw"))


def test_plain_needs_exactly_two_nuls() -> None:
    for data in (b"", b"alice", b"\0alice", b"\0alice\0secret\0", b"a\0b\0c\0d"):
        assert isinstance(Plain().start(data), MechanismFailed), data


def test_plain_with_an_empty_authcid_fails() -> None:
    assert isinstance(Plain().start(b"\0\0secret"), MechanismFailed)


def test_plain_keeps_undecodable_username_bytes_recoverable() -> None:
    step = Plain().start(b"\0al\xffce\0pw")
    assert isinstance(step, Finished)
    assert step.authcid.encode("utf-8", "surrogateescape") == b"al\xffce"


def test_login_prompts_for_username_then_password() -> None:
    mech = Login()
    assert mech.start(None) == Challenge(data=b"Username:")
    assert mech.respond(b"alice") == Challenge(data=b"Password:")
    step = mech.respond(b"secret")
    assert step == Finished(authcid="alice", authzid=None, credentials=Password(b"secret"))


def test_login_takes_an_initial_response_as_the_username() -> None:
    mech = Login()
    assert mech.start(b"alice") == Challenge(data=b"Password:")
    assert isinstance(mech.respond(b"secret"), Finished)


def test_login_with_an_empty_initial_response_still_asks_for_the_username() -> None:
    assert Login().start(b"") == Challenge(data=b"Username:")


def test_login_with_an_empty_username_fails() -> None:
    mech = Login()
    mech.start(None)
    assert isinstance(mech.respond(b""), MechanismFailed)


def test_login_refuses_nul_bytes_like_dovecot() -> None:
    mech = Login()
    mech.start(b"alice")
    assert isinstance(mech.respond(b"sec\0ret"), MechanismFailed)


def test_login_accepts_an_empty_password_and_lets_the_engine_refuse_it() -> None:
    mech = Login()
    mech.start(b"alice")
    step = mech.respond(b"")
    assert isinstance(step, Finished)
    assert step.credentials == Password(b"")


@given(st.binary(max_size=60))
def test_plain_at_once_ends_as_the_session_does(data: bytes) -> None:
    assert Plain.finish_at_once(data) == Plain().start(data)


@pytest.mark.parametrize("name", sorted(MECHANISMS))
@given(data=st.binary(max_size=40))
def test_finish_at_once_is_the_session_or_nothing(name: str, data: bytes) -> None:
    """Only a mechanism whose initial response is the whole exchange ends at once;
    the others say None (or refuse a NUL, as their session would)."""
    kind = MECHANISMS[name]
    at_once = kind.finish_at_once(data)
    if at_once is not None:
        assert at_once == kind(MechanismContext(anonymous_username="anon")).start(data)
    assert kind.finish_at_once(None) is None
