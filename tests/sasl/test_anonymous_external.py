"""ANONYMOUS and EXTERNAL: no secret travels; the user comes from configuration or a cert."""

from __future__ import annotations

from mailwarden.sasl.anonymous import Anonymous
from mailwarden.sasl.base import Challenge, Finished, MechanismContext, MechanismFailed
from mailwarden.sasl.external import External


def test_anonymous_accepts_any_trace_and_logs_in_as_the_anonymous_user() -> None:
    step = Anonymous().start(b"trace-info")
    assert step == Finished(authcid="anonymous", authzid=None, credentials=None)


def test_anonymous_uses_the_configured_name_and_tolerates_nuls() -> None:
    step = Anonymous(MechanismContext(anonymous_username="guest")).start(b"a\0b")
    assert step == Finished(authcid="guest", authzid=None, credentials=None)


def test_anonymous_without_initial_response_asks_once_and_accepts_the_answer() -> None:
    mech = Anonymous()
    assert mech.start(None) == Challenge(data=b"")
    assert isinstance(mech.respond(b""), Finished)


def test_anonymous_is_refused_when_no_anonymous_user_is_configured() -> None:
    step = Anonymous(MechanismContext(anonymous_username="")).start(b"")
    assert isinstance(step, MechanismFailed)


def test_external_logs_in_as_the_certificate_user() -> None:
    step = External(MechanismContext(cert_username="alice")).start(b"")
    assert step == Finished(authcid="alice", authzid=None, credentials=None)


def test_external_reports_a_different_authzid_and_drops_an_equal_one() -> None:
    context = MechanismContext(cert_username="admin")
    assert External(context).start(b"alice") == Finished(
        authcid="admin", authzid="alice", credentials=None
    )
    step = External(context).start(b"admin")
    assert isinstance(step, Finished)
    assert step.authzid is None


def test_external_without_a_certificate_username_fails() -> None:
    assert isinstance(External().start(b""), MechanismFailed)


def test_external_asks_for_the_authzid_when_there_is_no_initial_response() -> None:
    mech = External(MechanismContext(cert_username="alice"))
    assert mech.start(None) == Challenge(data=b"")
    assert isinstance(mech.respond(b""), Finished)


def test_external_refuses_nul_bytes() -> None:
    assert isinstance(External(MechanismContext(cert_username="a")).start(b"x\0y"), MechanismFailed)
