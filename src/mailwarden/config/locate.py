"""Where a key is written in the config file's text: the line an error names.

tomllib gives no positions, so the text is scanned the simple way a reader would:
table headers (``[guard.redis]``, ``[[guard.rules]]``, the n-th of an array of
tables for ``guard.rules[n]``), then ``key = value`` lines under them, with dotted
keys (``redis.timeout = 1``) and quoted parts. A key that is not written (a value a
check refuses for want of another, a key inside an inline table) is found at the
nearest written part of its path: the inline table's key, or the table's header.
Text inside multi-line strings is not told apart; a line that only looks like a key
there may be named. Good enough to point a person at the right place.

Belongs here: :func:`line_of`; nothing else.
"""

from __future__ import annotations

import re

_INDEX = re.compile(r"\[(\d+)\]")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_NAME = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_NAME}(?:\s*\.\s*{_NAME})*)\s*=")
_PART = re.compile(_NAME)


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[0] in "\"'" else p for p in _PART.findall(dotted))


def _key_path(key: str) -> tuple[str, ...]:
    """``guard.rules[1].period`` -> ``("guard", "rules", "[1]", "period")``."""
    out: list[str] = []
    for part in key.split("."):
        name = _INDEX.split(part)
        out.append(name[0])
        out.extend(f"[{i}]" for i in name[1::2])
    return tuple(p for p in out if p)


def line_of(text: str, key: str) -> int | None:
    """The 1-based line where ``key`` (an error's key path) is set, else where the
    nearest enclosing part of it is; None when nothing of it is in ``text``."""
    wanted = _key_path(key)
    if not wanted:
        return None
    best: tuple[int, int] | None = None  # (matched parts, line)
    table: tuple[str, ...] = ()
    counts: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = _parts(header.group(2))
            if header.group(1) == "[[":
                index = counts.get(names, -1) + 1
                counts[names] = index
                table = (*names, f"[{index}]")
            else:
                table = names
            path = table
        else:
            match = _KEY.match(line)
            if not match:
                continue
            path = (*table, *_parts(match.group(1)))
        score = _common(path, wanted)
        # A line counts when all of its own path is part of the key's, or all of the
        # key's is part of it (the first ``[[guard.rules]]`` for ``guard.rules``).
        if score in (len(path), len(wanted)) and (best is None or score > best[0]):
            best = (score, number)
            if score == len(wanted):
                break
    return None if best is None else best[1]


def _common(path: tuple[str, ...], wanted: tuple[str, ...]) -> int:
    n = 0
    for a, b in zip(path, wanted, strict=False):
        if a != b:
            break
        n += 1
    return n
