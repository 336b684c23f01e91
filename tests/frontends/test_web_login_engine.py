"""Every web sign-in form reaches the engine, so a refusal always costs a verification."""

from __future__ import annotations

import pytest

from mailwarden.auth.engine import Engine
from mailwarden.frontends.web import auth
from mailwarden.model import Account, Denied, DenyReason
from tests.helpers import hashed
from tests.test_dummies import ARGON_POLICY, RecordingHasher, imported_site


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("", "some password"),
        ("user0", ""),
        ("u" * (auth.MAX_USERNAME + 1), "some password"),
        ("user0", "p" * (auth.MAX_PASSWORD + 1)),
    ],
    ids=["no name", "no password", "name too long", "password too long"],
)
async def test_a_form_the_engine_cannot_use_still_pays_a_verification(
    username: str, password: str
) -> None:
    directory = await imported_site(2)
    await directory.create(Account(uid="bob", password=hashed("pw", "SHA512-CRYPT")))
    hasher = RecordingHasher(workers=1)
    engine = Engine(directory=directory, hasher=hasher, config=ARGON_POLICY)
    try:
        await engine.start()
        outcome = await auth.authenticate(
            engine, username, password, client_ip="192.0.2.1", secured=True
        )
    finally:
        hasher.close()
    assert outcome == Denied(reason=DenyReason.CREDENTIALS)
    assert hasher.schemes == ["SHA512-CRYPT"]  # the site's own cost, as for a wrong password
