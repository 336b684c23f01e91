"""The pam_exec helper's core: the call parsed, the engine's answer as a PAM code."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.model import (
    Account,
    Denied,
    DenyReason,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)
from mailwarden.protocols import pam
from mailwarden.protocols.pam import PamCode

ENV = {"PAM_USER": "alice", "PAM_TYPE": "auth", "PAM_SERVICE": "smtp", "PAM_RHOST": "192.0.2.9"}


def test_a_call_from_pam_exec_is_parsed() -> None:
    request = pam.parse(["service=IMAP|pop3", "quiet", "debug"], ENV)
    assert request == pam.PamRequest(
        user="alice",
        phase="auth",
        service="smtp",
        switches=("imap", "pop3"),
        remote_ip="192.0.2.9",
        quiet=True,
        debug=True,
    )
    attempt = request.attempt(b"s3cret\0")
    assert attempt.credentials == Password(b"s3cret") and attempt.switches == ("imap", "pop3")
    assert request.attempt(b"typed\n").credentials == Password(b"typed")


@pytest.mark.parametrize(
    ("options", "env"),
    [
        (["bogus"], ENV),
        ([], {**ENV, "PAM_TYPE": "session"}),
        ([], {**ENV, "PAM_USER": ""}),
        ([], {"PAM_TYPE": "auth"}),
    ],
    ids=["unknown option", "session phase", "empty user", "no user"],
)
def test_a_call_pam_exec_would_not_make_is_a_protocol_error(
    options: list[str], env: dict[str, str]
) -> None:
    with pytest.raises(ProtocolError):
        pam.parse(options, env)


@given(st.lists(st.text()), st.dictionaries(st.text(), st.text()))
def test_any_call_parses_or_raises_protocol_error(options: list[str], env: dict[str, str]) -> None:
    with contextlib.suppress(ProtocolError):
        pam.parse(options, env)


ACCOUNT = Account(uid="alice")
REQUEST = pam.parse([], {**ENV, "PAM_TYPE": "account"})


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (UserRecord(user="alice", account=ACCOUNT, fields={}), PamCode.SUCCESS),
        (Denied(reason=DenyReason.DISABLED), PamCode.ACCT_EXPIRED),
        (Denied(reason=DenyReason.SERVICE_DISABLED), PamCode.ACCT_EXPIRED),
        (NotFound(), PamCode.USER_UNKNOWN),
        (Unavailable(detail="down"), PamCode.AUTHINFO_UNAVAIL),
    ],
)
def test_the_account_phase_maps_each_state_to_its_pam_code(
    state: UserRecord | Denied | NotFound | Unavailable, code: PamCode
) -> None:
    assert pam.account_answer(REQUEST, state)[0] is code


def test_quiet_hides_only_a_plain_wrong_password() -> None:
    quiet = pam.parse(["quiet"], ENV)
    assert pam.auth_answer(quiet, Denied(reason=DenyReason.CREDENTIALS)) == (PamCode.AUTH_ERR, None)
    disabled = Denied(reason=DenyReason.DISABLED, message="Account not enabled")
    assert pam.auth_answer(quiet, disabled)[1] is not None
