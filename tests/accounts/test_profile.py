"""The structured profile edits the web page makes: the gateway's field rules, all or nothing."""

from __future__ import annotations

import pytest

from mailwarden.accounts.profile import ChangePolicy, edit_profile
from mailwarden.errors import FieldError
from mailwarden.mailgate.changes import process_change
from mailwarden.model import Account, Profile

ALICE = Account(
    uid="alice",
    mail="alice@example.org",
    profile=Profile(login_shell="/bin/bash", c="GB", irc_nick="alice"),
)
POLICY = ChangePolicy(login_shells=("/bin/bash", "/bin/zsh"))


def test_edits_set_and_remove_fields_as_the_gateway_would() -> None:
    edits: dict[str, str | None] = {"c": "de", "ircnick": None, "loginshell": "/bin/zsh"}
    profile = edit_profile(ALICE, edits, POLICY)
    mailed = process_change(
        "c: de\ndel ircnick\nloginshell: /bin/zsh", ALICE, POLICY, lambda name: None
    )
    assert profile == mailed.account.profile
    assert profile == Profile(login_shell="/bin/zsh", c="DE")


@pytest.mark.parametrize(
    ("edits", "complaint"),
    [
        ({"c": "Germany"}, "two-letter"),
        ({"loginshell": "/bin/evil"}, "loginShell: one of"),
        ({"loginshell": None}, "Cannot erase entry loginshell"),
        ({"emailforward": "alice@example.org"}, "would loop"),
        ({"l": "two\u202elines"}, "control characters"),
        ({"unknown": "x"}, "cannot be changed"),
        ({"ircnick": ""}, "a value is needed"),
    ],
)
def test_an_edit_that_breaks_a_rule_is_refused_with_the_rules_message(
    edits: dict[str, str | None], complaint: str
) -> None:
    with pytest.raises(FieldError, match=complaint):
        edit_profile(ALICE, edits, POLICY)


def test_a_field_the_site_does_not_offer_cannot_be_edited() -> None:
    with pytest.raises(FieldError, match="cannot be changed"):
        edit_profile(ALICE, {"ircnick": "bob"}, ChangePolicy(fields=("c",)))
