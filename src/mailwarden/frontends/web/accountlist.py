"""The administrators' account list: search, sort and page, in bounded memory and time.

What belongs here: reading the list's query string (:meth:`ListQuery.of`), the
natural order of names (:func:`natural_key`: ``user2`` before ``user10``), and
:class:`Window`, which is fed the matching accounts one at a time and keeps only
what the asked page needs. Pure: the page (admin.py) streams the matches from
:meth:`~mailwarden.ports.AccountEditor.listing` (the same pattern and the same code
as ``mailwarden user list PATTERN``) into a window.

Why a window over a stream, not a directory method that pages: the directory lists
in its own uid order (by the lower-cased uid, ``user10`` before ``user2``) and no
backend can page in natural order, by mail or by mail host without reading every
match. So a page reads the matches in the directory's order, at most
:data:`MAX_SCAN` of them, and keeps at most twice the rows up to the end of the asked
page: memory stays bounded by the page, and time by :data:`MAX_SCAN` and
:data:`SCAN_SECONDS`, whatever the size of the directory. Beyond either the list
says so and sorts and pages only the matches read (the first ones in the
directory's order): narrow the search (docs/web.md, "The account list").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from mailwarden.model import Listed

#: Matches read at most per page (a few tenths of a second from SQLite).
MAX_SCAN = 20_000
#: Seconds a page spends reading matches at most (admin.py stops the read then): a
#: pattern few accounts match is tested against every account by the directory.
SCAN_SECONDS = 1.0
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
#: Longest search pattern (a uid has at most 255 characters).
MAX_PATTERN = 255
_DIGITS = re.compile(r"([0-9]+)")

NaturalKey = tuple[str | tuple[int, str], ...]


def natural_key(text: str) -> NaturalKey:
    """The key that sorts ``text`` in natural order: case-insensitive, and runs of
    digits by their value (``user2`` < ``user10`` < ``User11``); ``007`` and ``7``
    are equal in value (the caller breaks such ties)."""
    parts = _DIGITS.split(text.casefold())
    # Even places hold text, odd places digits (as (length, digits) without leading
    # zeros: the value's order without int(), whatever the length).
    return tuple(
        part if index % 2 == 0 else (len(part.lstrip("0")), part.lstrip("0"))
        for index, part in enumerate(parts)
    )


#: The columns a list can be sorted by (name in the query string -> the value).
SORTS: Mapping[str, Callable[[Listed], str]] = {
    "uid": lambda item: item.uid,
    "mail": lambda item: item.mail or "",
    "status": lambda item: item.status.value,
    "mail_host": lambda item: item.mail_host or "",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    """What the administrator asked: ``q`` (a ``mailwarden user list`` pattern; empty:
    every account), the column and direction, the page (from 1) and its size."""

    q: str = ""
    sort: str = "uid"
    descending: bool = False
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE

    @classmethod
    def of(cls, params: Mapping[str, str]) -> ListQuery:
        """The query of a query string; anything unknown or out of range falls back
        to the default (a list is never refused for a bad link)."""
        size = _number(params.get("size", ""), DEFAULT_PAGE_SIZE)
        sort = params.get("sort", "uid")
        return cls(
            q=params.get("q", "").strip()[:MAX_PATTERN],
            sort=sort if sort in SORTS else "uid",
            descending=params.get("dir", "") == "desc",
            page=max(1, _number(params.get("page", ""), 1)),
            size=size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE,
        )

    @property
    def pattern(self) -> str:
        """The pattern for the directory: ``q`` as given, as ``user list`` reads it."""
        return self.q or "*"

    @property
    def wanted(self) -> int:
        """Rows up to the end of the asked page (what the window keeps)."""
        return min(self.page * self.size, MAX_SCAN)

    def link(
        self, *, page: int | None = None, sort: str | None = None, descending: bool | None = None
    ) -> str:
        """The query string of this list with another page, column or direction."""
        pairs = {
            "q": self.q,
            "sort": self.sort if sort is None else sort,
            "dir": "desc" if (self.descending if descending is None else descending) else "asc",
            "size": str(self.size),
            "page": str(self.page if page is None else page),
        }
        return "?" + urlencode(pairs)

    def sorted_by(self, column: str) -> str:
        """The link of a column heading: sort by it, or flip the direction if it is
        the current column; back to the first page."""
        flip = column == self.sort and not self.descending
        return self.link(sort=column, descending=flip, page=1)


def _number(text: str, default: int) -> int:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 9 else default


@dataclass(frozen=True, slots=True, kw_only=True)
class ListPage:
    """One page of the list: its rows, how many accounts matched (of those read:
    ``truncated`` when more than :data:`MAX_SCAN` did, ``timed_out`` when the read
    was stopped after :data:`SCAN_SECONDS`), and the number of pages."""

    query: ListQuery
    rows: tuple[Listed, ...]
    matched: int
    truncated: bool
    timed_out: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.matched // self.query.size))

    @property
    def first(self) -> int:
        """The position (from 1) of the page's first row; 0 on an empty page."""
        return (self.query.page - 1) * self.query.size + 1 if self.rows else 0


#: A row as the window keeps it: the column's key, the uid's key, the row (each key
#: made once per match, not at every sort).
_Keyed = tuple[NaturalKey, tuple[NaturalKey, str], Listed]


def _column(row: _Keyed) -> NaturalKey:
    return row[0]


def _uid(row: _Keyed) -> tuple[NaturalKey, str]:
    return row[1]


class Window:
    """The rows of one page of the sorted matches, fed one match at a time.

    Keeps at most ``2 * query.wanted`` rows: when the buffer is full it is sorted
    and cut back to ``wanted`` (the rows after them can never come back onto the
    page). :meth:`add` answers False once :data:`MAX_SCAN` matches were read: the
    caller stops reading.
    """

    def __init__(self, query: ListQuery, *, max_scan: int | None = None) -> None:
        self.query = query
        self.max_scan = MAX_SCAN if max_scan is None else max_scan
        self.read = 0
        self._rows: list[_Keyed] = []
        self._value = SORTS[query.sort]
        self._truncated = False
        self._timed_out = False

    def stopped(self) -> None:
        """The read was stopped before the matches ended (it took too long)."""
        self._timed_out = True

    def add(self, item: Listed) -> bool:
        """Take one match; False when no more should be read."""
        if self.read >= self.max_scan:
            self._truncated = True
            return False
        self.read += 1
        uid_key = (natural_key(item.uid), item.uid)
        column_key = uid_key[0] if self.query.sort == "uid" else natural_key(self._value(item))
        self._rows.append((column_key, uid_key, item))
        if len(self._rows) >= 2 * self.query.wanted:
            self._cut()
        return True

    def _cut(self) -> None:
        # Ties always by the uid ascending: a stable sort by the uid, then by the
        # column (``reverse`` keeps equal rows in their order).
        self._rows.sort(key=_uid)
        self._rows.sort(key=_column, reverse=self.query.descending)
        del self._rows[self.query.wanted :]

    def page(self) -> ListPage:
        """The asked page (the last page if it asked beyond the end)."""
        self._cut()
        query = self.query
        last = max(1, -(-self.read // query.size))
        if query.page > last:
            query = replace(query, page=last)
        start = (query.page - 1) * query.size
        return ListPage(
            query=query,
            rows=tuple(row[2] for row in self._rows[start : start + query.size]),
            matched=self.read,
            truncated=self._truncated,
            timed_out=self._timed_out,
        )
