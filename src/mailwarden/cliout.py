"""How the command line prints results: a table for people, TSV or JSON for scripts.

``--format table|tsv|json`` chooses; without it, a terminal gets a table and
anything else (a pipe, a file) gets TSV. The rules, for scripts:

* **TSV**: one record per line, fields separated by one tab, no header and no
  footer, written as the records come (50,000 accounts print in well under a
  second, nothing is cut short). A backslash, tab, newline or carriage return
  inside a value is written ``\\\\``, ``\\t``, ``\\n``, ``\\r`` (PostgreSQL's
  ``COPY`` text format), so a line is always one record.
* **JSON**: lists are one JSON array (streamed element by element), single
  records one object.
* **table**: rich's tables, sized to the terminal (long values are shortened
  there; use TSV or JSON to read every character).

Belongs here: choosing the format and writing rows, key/value records and JSON.
Which columns a command prints is the command's (cli/).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table


class Format(enum.Enum):
    """The output formats of ``--format``."""

    TABLE = "table"
    TSV = "tsv"
    JSON = "json"


FORMAT_NAMES = tuple(f.value for f in Format)

_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def choose(requested: str | None, *, terminal: bool) -> Format:
    """The format asked for, else a table on a terminal and TSV anywhere else."""
    if requested is not None:
        return Format(requested)
    return Format.TABLE if terminal else Format.TSV


def tsv_field(value: str) -> str:
    """``value`` with the characters that would break a TSV line escaped."""
    return value.translate(_TSV_ESCAPES)


class RowWriter:
    """Rows printed as they come (TABLE or TSV; JSON is :class:`JsonArrayWriter`):
    :meth:`add` each, then :meth:`close`, which returns the row count.

    TSV lines are written one by one, so a list of a million accounts streams
    into a pipe in flat memory; a table (a terminal) is printed at the end, with
    ``footer`` (a count, say: it is for people only) under it.
    """

    def __init__(
        self,
        fmt: Format,
        columns: Sequence[str],
        *,
        stream: TextIO,
        console: Console,
        footer: str | None = None,
    ) -> None:
        self.stream, self.console, self.footer = stream, console, footer
        self.table = Table(*columns) if fmt is not Format.TSV else None
        self.count = 0

    def add(self, row: Sequence[str]) -> None:
        if self.table is None:
            line = "\t".join(row)
            # Nothing to escape, the usual case, is told by a few scans in C (a
            # million rows of `user list` spent a fifth of their time escaping).
            if line.count("\t") != len(row) - 1 or "\n" in line or "\r" in line or "\\" in line:
                line = "\t".join(tsv_field(v) for v in row)
            self.stream.write(line + "\n")
        else:
            self.table.add_row(*row)
        self.count += 1

    def close(self) -> int:
        if self.table is None:
            self.stream.flush()
            return self.count
        self.console.print(self.table)
        if self.footer is not None:
            self.console.print(self.footer.format(count=self.count))
        return self.count


def write_rows(
    fmt: Format,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    stream: TextIO,
    console: Console,
    footer: str | None = None,
) -> int:
    """Print ``rows`` (:class:`RowWriter`); the row count."""
    writer = RowWriter(fmt, columns, stream=stream, console=console, footer=footer)
    for row in rows:
        writer.add(row)
    return writer.close()


def write_record(
    fmt: Format, record: Mapping[str, Any], *, stream: TextIO, console: Console
) -> None:
    """One record: a key/value table, ``key<TAB>value`` lines, or a JSON object.

    In TABLE and TSV form, lists and objects are shown as compact JSON and empty
    values are left out of the table (TSV keeps every key)."""
    if fmt is Format.JSON:
        stream.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        return
    if fmt is Format.TSV:
        for key, value in record.items():
            stream.write(f"{tsv_field(key)}\t{tsv_field(_text(value))}\n")
        return
    table = Table(show_header=False, box=None)
    for key, value in record.items():
        if value in (None, "", [], {}):
            continue
        table.add_row(f"[bold]{key}[/bold]", _text(value))
    console.print(table)


class JsonArrayWriter:
    """A JSON array written element by element: :meth:`add` each, then :meth:`close`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0
        stream.write("[")

    def add(self, item: Any) -> None:
        self.stream.write(",\n  " if self.count else "\n  ")
        self.stream.write(json.dumps(item, sort_keys=True).replace("\n", "\n  "))
        self.count += 1

    def close(self) -> None:
        self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


def write_json_array(items: Iterable[Any], *, stream: TextIO) -> None:
    """A JSON array of ``items`` (:class:`JsonArrayWriter`)."""
    writer = JsonArrayWriter(stream)
    for item in items:
        writer.add(item)
    writer.close()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)
