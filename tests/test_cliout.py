"""The command line's output formats (mailwarden.cliout)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from mailwarden import cliout
from mailwarden.cliout import Format


def test_a_terminal_gets_a_table_and_anything_else_tsv_unless_asked() -> None:
    assert cliout.choose(None, terminal=True) is Format.TABLE
    assert cliout.choose(None, terminal=False) is Format.TSV
    assert cliout.choose("json", terminal=True) is Format.JSON
    assert cliout.choose("table", terminal=False) is Format.TABLE


def test_tsv_rows_escape_what_would_break_a_line() -> None:
    stream = io.StringIO()
    rows = [("a\tb", "c\nd", "e\\f\rg"), ("", "x", "")]
    count = cliout.write_rows(
        Format.TSV, ("one", "two", "three"), iter(rows), stream=stream, console=Console()
    )
    assert count == 2
    assert stream.getvalue() == "a\\tb\tc\\nd\te\\\\f\\rg\n\tx\t\n"


def test_a_json_array_is_valid_with_zero_one_or_many_items() -> None:
    for items in ([], [{"a": 1}], [{"a": 1}, {"b": [1, 2]}, "x"]):
        stream = io.StringIO()
        cliout.write_json_array(iter(items), stream=stream)
        assert json.loads(stream.getvalue()) == items


def test_a_record_as_tsv_keeps_every_key_and_shows_lists_as_json() -> None:
    stream = io.StringIO()
    record = {"uid": "bob", "home": None, "alternate_addresses": ["a@x", "b@x"]}
    cliout.write_record(Format.TSV, record, stream=stream, console=Console())
    assert stream.getvalue() == 'uid\tbob\nhome\t\nalternate_addresses\t["a@x", "b@x"]\n'
