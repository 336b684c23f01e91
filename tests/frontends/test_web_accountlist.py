"""The account list's pieces: natural order, the query string, the bounded window."""

from __future__ import annotations

import random

from mailwarden.frontends.web.accountlist import (
    DEFAULT_PAGE_SIZE,
    MAX_PATTERN,
    ListQuery,
    Window,
    natural_key,
)
from mailwarden.model import AccountStatus, Listed


def test_natural_order_puts_user2_before_user10_and_ignores_case() -> None:
    names = ["user10", "User2", "user1", "user100", "user02x", "alice", "user9", "Bob"]
    assert sorted(names, key=natural_key) == [
        "alice",
        "Bob",
        "user1",
        "User2",
        "user02x",
        "user9",
        "user10",
        "user100",
    ]


def test_natural_order_compares_long_digit_runs_by_value_without_int() -> None:
    big = "9" * 5000  # beyond what int() reads from a string
    assert natural_key("a" + big) > natural_key("a" + "1" + "0" * 4998)
    assert natural_key("a0007") == natural_key("a7")


def test_the_query_string_falls_back_to_defaults_for_anything_unknown() -> None:
    q = ListQuery.of({"q": " user* ", "sort": "password", "dir": "up", "page": "-3", "size": "7"})
    assert q == ListQuery(q="user*", sort="uid", descending=False, page=1, size=DEFAULT_PAGE_SIZE)
    assert q.pattern == "user*"
    assert ListQuery.of({}).pattern == "*"
    assert ListQuery.of({"page": "99999999999999"}).page == 1
    assert len(ListQuery.of({"q": "x" * 1000}).q) == MAX_PATTERN
    q = ListQuery.of({"sort": "mail", "dir": "desc", "page": "3", "size": "100"})
    assert (q.sort, q.descending, q.page, q.size) == ("mail", True, 3, 100)


def test_links_keep_the_query_and_a_heading_flips_the_direction_of_its_column() -> None:
    q = ListQuery(q="a&b", sort="uid", page=4)
    assert q.link(page=5) == "?q=a%26b&sort=uid&dir=asc&size=50&page=5"
    assert q.sorted_by("uid") == "?q=a%26b&sort=uid&dir=desc&size=50&page=1"
    assert q.sorted_by("mail") == "?q=a%26b&sort=mail&dir=asc&size=50&page=1"
    flipped = ListQuery(sort="uid", descending=True)
    assert "dir=asc" in flipped.sorted_by("uid")


def listed(uid: str, **fields: object) -> Listed:
    return Listed(uid=uid, **fields)  # type: ignore[arg-type]


def users(count: int) -> list[Listed]:
    """user1..userN in the directory's order (the lower-cased uid: user10 before user2)."""
    return sorted((listed(f"user{i}") for i in range(1, count + 1)), key=lambda item: item.uid)


def page_of(query: ListQuery, items: list[Listed], *, max_scan: int = 20_000) -> Window:
    window = Window(query, max_scan=max_scan)
    for item in items:
        if not window.add(item):
            break
    return window


def test_pages_are_cut_from_the_natural_order_of_every_match() -> None:
    items = users(120)
    first = page_of(ListQuery(size=25), items).page()
    assert [r.uid for r in first.rows] == [f"user{i}" for i in range(1, 26)]
    assert (first.matched, first.pages, first.first, first.truncated) == (120, 5, 1, False)
    second = page_of(ListQuery(size=25, page=2), items).page()
    assert [r.uid for r in second.rows] == [f"user{i}" for i in range(26, 51)]
    assert second.first == 26
    last = page_of(ListQuery(size=25, page=5, descending=True), items).page()
    assert [r.uid for r in last.rows] == [f"user{i}" for i in range(20, 0, -1)]


def test_a_page_beyond_the_end_shows_the_last_page() -> None:
    page = page_of(ListQuery(size=25, page=40), users(30)).page()
    assert page.query.page == 2
    assert [r.uid for r in page.rows] == [f"user{i}" for i in range(26, 31)]
    empty = page_of(ListQuery(page=3), []).page()
    assert (empty.rows, empty.matched, empty.pages, empty.first) == ((), 0, 1, 0)


def test_sorting_by_a_column_breaks_ties_by_the_uid_in_natural_order() -> None:
    items = [
        listed("u10", status=AccountStatus.DISABLED, mail_host="imap2"),
        listed("u2", status=AccountStatus.ACTIVE, mail_host="imap10"),
        listed("u1", status=AccountStatus.DISABLED),
        listed("u3", status=AccountStatus.ACTIVE, mail_host="imap2"),
    ]
    by_status = page_of(ListQuery(sort="status"), items).page()
    assert [r.uid for r in by_status.rows] == ["u2", "u3", "u1", "u10"]
    # Descending by a column: the ties still by the uid ascending.
    down = page_of(ListQuery(sort="status", descending=True), items).page()
    assert [r.uid for r in down.rows] == ["u1", "u10", "u2", "u3"]
    by_host = page_of(ListQuery(sort="mail_host"), items).page()
    assert [r.uid for r in by_host.rows] == ["u1", "u3", "u10", "u2"]
    by_mail = page_of(
        ListQuery(sort="mail", descending=True),
        [listed("a", mail="x2@example.com"), listed("b", mail="x10@example.com"), listed("c")],
    ).page()
    assert [r.uid for r in by_mail.rows] == ["b", "a", "c"]


def test_the_window_holds_at_most_twice_the_rows_up_to_the_end_of_the_page() -> None:
    items = users(5000)
    random.Random(7).shuffle(items)
    query = ListQuery(size=25, page=3)
    window = Window(query)
    largest = 0
    for item in items:
        window.add(item)
        largest = max(largest, len(window._rows))
    assert largest <= 2 * 75
    assert [r.uid for r in window.page().rows] == [f"user{i}" for i in range(51, 76)]


def test_reading_stops_after_the_scan_limit_and_the_page_says_so() -> None:
    items = users(300)
    window = page_of(ListQuery(size=25), items, max_scan=100)
    assert window.read == 100
    page = window.page()
    assert page.truncated and page.matched == 100 and page.pages == 4
    # Exactly at the limit nothing is left unread: not truncated.
    exact = page_of(ListQuery(size=25), items[:100], max_scan=100).page()
    assert not exact.truncated and exact.matched == 100
