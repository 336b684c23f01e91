"""banmirror.py alone: messages applied in order give the state Redis holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailwarden.guard.stores.banmirror import MIRROR_LIMIT, BanMirror, ban_change, parse_ban

NET = "192.0.2.0/24"


def test_bans_lifts_and_lifting_everything_apply_in_order() -> None:
    mirror = BanMirror()
    assert mirror.load({"account:alice": (500.0, "account")})
    assert mirror.apply(ban_change(NET, 1000.0, "ip")) is None
    assert mirror.banned(["203.0.113.0/24", NET], 999.0) == NET
    assert mirror.banned([NET], 1000.0) is None  # expired by the clock
    mirror.apply(ban_change(NET, 900.0, "ip"))  # shorter: the longer ban stays
    assert mirror.entries[NET] == (1000.0, "ip")
    mirror.apply(ban_change(NET, None, ""))
    assert mirror.banned([NET], 1.0) is None
    mirror.apply(ban_change(None, None, ""))
    assert mirror.entries == {} and mirror.active


def test_a_message_that_does_not_parse_drops_the_mirror() -> None:
    mirror = BanMirror()
    mirror.load({NET: (1000.0, "ip")})
    for bad in ("not json", "{}", '{"target": 5, "expires": 1, "rule": "x"}'):
        mirror.load({NET: (1000.0, "ip")})
        assert mirror.apply(bad) is not None
        assert not mirror.active and mirror.entries == {}


def test_more_bans_than_the_limit_are_not_mirrored() -> None:
    mirror = BanMirror()
    assert not mirror.load({f"account:u{n}": (1.0, "a") for n in range(MIRROR_LIMIT + 1)})
    assert not mirror.active


def test_stored_ban_values_parse_or_are_ignored() -> None:
    assert parse_ban("1000.5 ip") == (1000.5, "ip")
    assert parse_ban(b"7 account") == (7.0, "account")
    assert parse_ban(None) is None and parse_ban("soon ip") is None


@given(st.text(max_size=80))
def test_any_message_is_applied_or_refused_without_error(data: str) -> None:
    mirror = BanMirror()
    mirror.load({})
    problem = mirror.apply(data)
    assert (problem is None) == mirror.active
