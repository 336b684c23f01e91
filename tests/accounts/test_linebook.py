"""Repeated names in a passwd-file, found the same way whatever keeps them:
read_accounts in batches, with its names in memory or in a temporary SQLite file
(accounts/linebook.py, what ``import passwd-file`` uses to stay in flat memory)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.accounts.linebook import DiskLineBook
from mailwarden.accounts.passwdfile import (
    LineBook,
    MemoryLineBook,
    PasswdFileError,
    read_accounts,
    uid_key,
)
from mailwarden.model import Account

Books = Callable[[], AbstractContextManager[LineBook]]
BOOKS: list[Books] = [lambda: contextlib.nullcontext(MemoryLineBook()), DiskLineBook]

LINES = [
    "alice@example.org:{PLAIN}a",  # 1
    "# a comment",  # 2
    "bob:{PLAIN}b::::::mailwarden_alt=Bob@Example.org",  # 3
    "ALICE@example.org:{PLAIN}again",  # 4: alice of line 1
    "broken:x:notanumber",  # 5: not an account
    "carol:{PLAIN}c::::::mailwarden_mail=bob@example.ORG",  # 6: bob's address, line 3
    "dave:{PLAIN}d::::::mailwarden_alt=alice@EXAMPLE.org",  # 7: alice's mail, line 1
    "bob@example.org:{PLAIN}e::::::mailwarden_mail=",  # 8: a uid may be another's address
    "carol:{PLAIN}f",  # 9: carol's line 6 was refused, so this one is carol's first
]


def outcomes(results: Iterator[tuple[int, Account | PasswdFileError]]) -> list[tuple[int, str]]:
    return [(n, item.uid if isinstance(item, Account) else item.message) for n, item in results]


@pytest.mark.parametrize("batch", [1, 2, 3, 1000])
@pytest.mark.parametrize("books", BOOKS, ids=["memory", "disk"])
def test_a_name_an_earlier_line_has_is_an_error_naming_that_line(books: Books, batch: int) -> None:
    with books() as book:
        got = outcomes(read_accounts(LINES, book=book, batch=batch))
        assert book.lines_of([uid_key("CAROL"), uid_key("nobody")]) == {uid_key("carol"): 9}
    assert got == [
        (1, "alice@example.org"),
        (3, "bob"),
        (4, "user 'ALICE@example.org' is already defined on line 1"),
        (5, "uid column 'notanumber' is not a number"),
        (6, "address 'bob@example.ORG' is already used on line 3"),
        (7, "address 'alice@EXAMPLE.org' is already used on line 1"),
        (8, "bob@example.org"),
        (9, "carol"),
    ]


_ALT = st.sampled_from(["c@x.org", "D@x.org", "e@x.org"])
_NAME = st.sampled_from(["a", "A", "b", "é", "É", "c@x.org", "C@X.ORG", "d@x.org"])


@st.composite
def passwd_lines(draw: st.DrawFn) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        uid = draw(_NAME)
        extra = ""
        if draw(st.booleans()):
            extra = "::::::mailwarden_alt=" + draw(
                st.sampled_from(["c@x.org", "D@x.org", "e@x.org"])
            )
        lines.append(f"{uid}:{{PLAIN}}x{extra}" if draw(st.booleans()) else "#")
    return lines


@settings(max_examples=60, deadline=None)
@given(lines=passwd_lines(), batch=st.integers(min_value=1, max_value=6))
def test_any_batch_size_and_book_find_the_same_lines(lines: list[str], batch: int) -> None:
    one_at_a_time = outcomes(read_accounts(lines, batch=1))
    with DiskLineBook() as book:
        assert outcomes(read_accounts(lines, book=book, batch=batch)) == one_at_a_time


@pytest.mark.parametrize("name", ['q"uote', "back\\slash", "ünï", "plain"])
def test_a_disk_book_finds_names_json_must_escape(name: str) -> None:
    with DiskLineBook() as book:
        got = outcomes(read_accounts([f"{name}:x", "other:x", f"{name.upper()}:y"], book=book))
    assert got[2] == (3, f"user {name.upper()!r} is already defined on line 1")


def test_a_disk_book_larger_than_its_cache_still_answers() -> None:
    with DiskLineBook(cache_kib=64) as book:
        for start in range(0, 20_000, 1000):
            book.keep({uid_key(f"user{n}"): n for n in range(start, start + 1000)})
        assert book.lines_of([uid_key("USER19999"), uid_key("user20000"), uid_key("user7")]) == {
            uid_key("user19999"): 19_999,
            uid_key("user7"): 7,
        }
