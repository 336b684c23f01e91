"""MIME limits of incoming mail: depth, part count, and no traceback for any input.

The Hypothesis tests build MIME trees of any shape (multipart and message/rfc822
containers, digests whose parts default to message/rfc822), then damage them
with random bytes: ``mime.parse`` returns a message or raises TooComplex, and the
Verifier (real GnuPG) returns a SignedText or raises VerificationError. Nothing
else, and never a RecursionError.
"""

from __future__ import annotations

import contextlib
from email.message import Message

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwarden.accounts.openpgp import VerificationError, Verifier
from mailwarden.mailgate import mime
from tests.mailgate.conftest import Keys, mail


def nested(depth: int, inner: bytes = b"Content-Type: text/plain\n\nping\n") -> bytes:
    """A message whose text part sits ``depth`` multipart/mixed levels down."""
    head = b"From: a@example.org\nMIME-Version: 1.0\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(depth)
    )
    closing = b"".join(b"\n--b%d--\n" % i for i in reversed(range(depth)))
    return head + opening + inner + closing


def flat(parts: int) -> bytes:
    body = b"".join(b"--b\nContent-Type: text/plain\n\npart %d\n" % i for i in range(parts))
    return (
        b'From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n'
        + body
        + b"--b--\n"
    )


def digest_chain(levels: int) -> bytes:
    """multipart/digest parts default to message/rfc822: two levels per declaration."""
    inner = b"Subject: leaf\n\nping\n"
    for i in range(levels):
        inner = (
            b'Content-Type: multipart/digest; boundary="d%d"\n\n--d%d\n\n' % (i, i)
            + inner
            + b"\n--d%d--\n" % i
        )
    return b"From: a@example.org\nMIME-Version: 1.0\n" + inner


def depth_of(raw: bytes) -> int:
    message = mime.parse(raw)
    deepest, stack = 0, [(message, 1)]
    while stack:
        part, depth = stack.pop()
        deepest = max(deepest, depth)
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((sub, depth + 1) for sub in payload if isinstance(sub, Message))
    return deepest


def test_a_thousand_levels_of_nesting_are_refused_before_parsing() -> None:
    raw = nested(1000)
    assert 30_000 < len(raw) < 80_000
    with pytest.raises(mime.TooComplex, match="too complex"):
        mime.parse(raw)


def test_the_depth_limit_is_inclusive() -> None:
    # The outer message is level 1, the text part one level below the last container.
    assert depth_of(nested(mime.MAX_DEPTH - 1)) == mime.MAX_DEPTH
    with pytest.raises(mime.TooComplex, match="deeper than"):
        mime.parse(nested(mime.MAX_DEPTH))


def test_digests_cannot_nest_deeper_without_declaring_containers() -> None:
    assert depth_of(digest_chain(3)) == 7
    with pytest.raises(mime.TooComplex):
        mime.parse(digest_chain(mime.MAX_CONTAINERS // 2 + 1))


def test_the_part_count_limit_is_inclusive() -> None:
    mime.parse(flat(mime.MAX_PARTS - 1))  # plus the container itself
    with pytest.raises(mime.TooComplex, match="more than"):
        mime.parse(flat(mime.MAX_PARTS))


_ARMOUR = (
    b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nping\n"
    b"-----BEGIN PGP SIGNATURE-----\n\niHUEARYIAB0WIQ==\n-----END PGP SIGNATURE-----\n"
)
_TEXT = st.one_of(st.binary(max_size=40), st.just(_ARMOUR)).map(
    lambda b: b"Content-Type: text/plain\n\n" + b + b"\n"
)


def _container(children: list[bytes], kind: str, index: int) -> bytes:
    boundary = b"x%d" % index
    if kind == "message/rfc822":
        return b"Content-Type: message/rfc822\n\n" + (children[0] if children else b"\n")
    body = b"".join(b"--" + boundary + b"\n" + child + b"\n" for child in children)
    return (
        b'Content-Type: %s; boundary="%s"\n\n' % (kind.encode(), boundary)
        + body
        + b"--"
        + boundary
        + b"--\n"
    )


_TREE = st.recursive(
    _TEXT,
    lambda children: st.builds(
        _container,
        st.lists(children, max_size=4),
        st.sampled_from(["multipart/mixed", "multipart/digest", "message/rfc822"]),
        st.integers(0, 10_000),
    ),
    max_leaves=300,
)


@st.composite
def damaged_mime(draw: st.DrawFn) -> bytes:
    tree = draw(_TREE)
    # A chain of single-child containers around it: deep enough to pass the limits.
    for index in range(draw(st.integers(0, 2 * mime.MAX_DEPTH))):
        kind = draw(st.sampled_from(["multipart/mixed", "multipart/digest", "message/rfc822"]))
        tree = _container([tree], kind, index)
    raw = b"From: a@example.org\nMIME-Version: 1.0\n" + tree
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 8))
        raw = raw[:at] + draw(st.binary(max_size=12)) + raw[at + cut :]
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_mime())
def test_any_mime_tree_parses_or_is_too_complex(raw: bytes) -> None:
    with contextlib.suppress(mime.TooComplex):
        mime.parse(raw)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(damaged_mime(), st.binary(max_size=2000)))
def test_the_verifier_answers_any_input_with_a_signed_text_or_a_verification_error(
    keys: Keys, raw: bytes
) -> None:
    verifier = Verifier(str(keys.gateway))
    with contextlib.suppress(VerificationError):
        verifier.verify_message(raw)


def test_a_signed_request_inside_a_few_mime_layers_still_verifies(keys: Keys) -> None:
    signed = mail(keys.clearsign("ping\n", keys.alice)).split(b"\n\n", 1)[1]
    raw = nested(3, b"Content-Type: text/plain\n\n" + signed)
    result = Verifier(str(keys.gateway)).verify_message(raw)
    assert result.fingerprint == keys.alice and result.text == "ping\n"


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("at", [48, 60, 75])
def test_stray_bytes_that_gpg_quotes_on_stderr_are_a_verification_error_not_a_traceback(
    keys: Keys, at: int
) -> None:
    # gpg repeats bad armour lines on stderr; python-gnupg's reader thread must survive.
    damaged = _ARMOUR[:at] + b"\xe5\xff" + _ARMOUR[at:]
    with pytest.raises(VerificationError):
        Verifier(str(keys.gateway)).verify_message(mail(damaged))


def test_replies_keep_their_non_ascii_text(keys: Keys) -> None:
    verifier = Verifier(str(keys.gateway))
    signed = verifier.clearsign("l: Zürich, 東京\n", keys.gateway_key)
    assert "l: Zürich, 東京" in signed
    armoured = verifier.encrypt("l: Zürich, 東京\n", keys.alice)
    from tests.mailgate.conftest import gpg

    assert gpg(keys.world, "--decrypt", stdin=armoured.encode()).decode() == "l: Zürich, 東京\n"
