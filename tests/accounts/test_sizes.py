"""Sizes in human units: what the CLI, the admin API and the web page read and show."""

from __future__ import annotations

import pytest

from mailwarden.accounts import rules
from mailwarden.accounts.sizes import format_size, parse_size
from mailwarden.errors import InvalidAccount
from mailwarden.model import Account

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2G", 2 * G),
        ("500M", 500 * M),
        ("1.5G", 3 * G // 2),
        ("1.125g", 9 * G // 8),
        ("1048576", 1048576),
        ("0", 0),
        ("2GB", 2 * G),
        ("2GiB", 2 * G),
        ("2 g", 2 * G),
        ("  3K ", 3 * K),
        ("1T", T),
        ("512B", 512),
    ],
)
def test_a_size_is_read_in_binary_units_as_dovecot_reads_quota_rules(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected a size"),
        ("lots", "expected a size"),
        ("-1", "expected a size"),
        ("2X", "expected a size"),
        ("1.5", "no decimals"),
        ("1.0001G", "expected a size"),
        ("1.001K", "not a whole number of bytes"),
        ("1" * 20, "expected a size"),
    ],
)
def test_a_bad_size_is_refused_naming_the_field(text: str, problem: str) -> None:
    with pytest.raises(InvalidAccount) as caught:
        parse_size(text, "quota_bytes")
    assert str(caught.value).startswith("quota_bytes: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (2 * G, "2G"),
        (500 * M, "500M"),
        (3 * G // 2, "1.5G"),
        (9 * G // 8, "1.125G"),
        (1536, "1.5K"),
        (T, "1T"),
        (1000, "1000"),
        (1000000, "1000000"),  # 976.5625K: more decimals than a size may have
        (0, "0"),
    ],
)
def test_a_size_is_shown_in_the_largest_unit_that_writes_it_exactly(size: int, text: str) -> None:
    assert format_size(size) == text


def test_every_size_shown_reads_back_as_the_same_number_of_bytes() -> None:
    sizes = [
        *range(0, 5000, 7),
        *(
            n * unit + extra
            for n in (1, 3, 1023, 1024, 5000)
            for unit in (K, M, G, T)
            for extra in (0, 1, unit // 8, unit // 1000)
        ),
        2**63 - 1,
    ]
    for size in sizes:
        assert parse_size(format_size(size)) == size, size


def test_user_set_and_the_json_patch_read_the_quota_in_units() -> None:
    account = Account(uid="alice")
    assert rules.apply_assignments(account, ["quota_bytes=2G"]).quota_bytes == 2 * G
    assert rules.apply_json(account, {"quota_bytes": "1.5G"}).quota_bytes == 3 * G // 2
    assert rules.apply_json(account, {"quota_bytes": 1000}).quota_bytes == 1000
    assert rules.apply_assignments(account, ["quota_bytes="]).quota_bytes is None
    with pytest.raises(InvalidAccount, match="quota_bytes"):
        rules.apply_assignments(account, ["quota_bytes=much"])
    # quota_messages stays a plain count.
    with pytest.raises(InvalidAccount, match="quota_messages: expected an integer"):
        rules.apply_assignments(account, ["quota_messages=2K"])


def test_a_size_beyond_what_a_directory_stores_is_refused_by_the_reader() -> None:
    assert parse_size(str(2**63 - 1)) == rules.MAX_INTEGER
    with pytest.raises(InvalidAccount, match="more than the largest size"):
        parse_size("9000000T", "quota_bytes")
