"""Framing, escaping and base64 shared by both Dovecot sockets."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.protocols.dovecot_common import (
    LineReader,
    decode_base64,
    decode_forward_fields,
    escape,
    format_fields,
    parse_ip,
    parse_port,
    parse_uint,
    split_fields,
    unescape,
)


def test_escaping_uses_dovecots_001_sequences() -> None:
    assert escape("a\x01b\tc\rd\ne\0f") == "a\x011b\x01tc\x01rd\x01ne\x010f"


def test_unescaping_maps_known_sequences_and_passes_others_through() -> None:
    assert unescape("\x011\x01t\x01r\x01n\x010") == "\x01\t\r\n\0"
    assert unescape("\x01l\x01\\x") == "l\\x"


def test_a_trailing_lone_escape_byte_is_dropped_like_dovecot_drops_it() -> None:
    assert unescape("abc\x01") == "abc"


@given(st.text())
def test_escaping_round_trips_any_text(value: str) -> None:
    assert unescape(escape(value)) == value


@given(st.text())
def test_escaped_text_never_contains_a_field_or_line_separator(value: str) -> None:
    assert not set(escape(value)) & {"\t", "\n", "\r", "\0"}


@given(st.lists(st.text(), min_size=1))
def test_escaped_fields_split_back_into_the_same_fields(values: list[str]) -> None:
    assert split_fields("\t".join(escape(v) for v in values)) == values


def test_reply_fields_are_escaped_and_bare_words_have_no_equals_sign() -> None:
    assert format_fields({"reason": "a\tb", "nologin": None}) == "\treason=a\x01tb\tnologin"


def test_forward_fields_are_decoded_from_their_second_layer_of_escaping() -> None:
    # doveadm -x forward_a=1 -x forward_b=x<TAB>y: the list is escaped, then the AUTH line.
    inner = "\t".join(escape(item) for item in ("a=1", "b=x\ty", "flag"))
    assert split_fields(escape(inner)) == [inner]
    assert decode_forward_fields(inner) == (("a", "1"), ("b", "x\ty"), ("flag", None))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        ("4294967295", 2**32 - 1),
        ("4294967296", None),
        ("", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1a", None),
        ("١", None),
    ],
)
def test_unsigned_integers_parse_like_str_to_uint(text: str, value: int | None) -> None:
    assert parse_uint(text) == value


def test_addresses_and_ports_that_do_not_parse_are_dropped() -> None:
    assert parse_ip("192.0.2.1") == "192.0.2.1"
    assert parse_ip("[2001:db8::1]") == "2001:db8::1"
    assert parse_ip("2001:db8::1") == "2001:db8::1"
    assert parse_ip("localhost") is None
    assert parse_ip("") is None
    assert (parse_port("25"), parse_port("0"), parse_port("65536"), parse_port("x")) == (
        25,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("AGFsaWNlAHNlY3JldA==", b"\0alice\0secret"),
        ("AGFs aWNl\r\nAHNl Y3JldA= =", b"\0alice\0secret"),  # whitespace anywhere
        ("", b""),
        ("YQ==", b"a"),
        ("YWI=", b"ab"),
        ("YR==", b"a"),  # non-zero trailing bits are tolerated, as Dovecot does
    ],
)
def test_base64_decodes_as_dovecot_decodes(text: str, data: bytes) -> None:
    assert decode_base64(text) == data


@pytest.mark.parametrize("text", ["YQ", "YWI", "Y", "YQ=", "YQ==YQ==", "YQ===", "Y!==", "=", "é"])
def test_base64_without_padding_or_with_stray_characters_is_invalid(text: str) -> None:
    assert decode_base64(text) is None


def _slow_decode(text: str) -> bytes | None:
    # The rule spelled out: drop whitespace, then padded base64 in full, or nothing.
    compact = "".join(c for c in text if c not in " \t\r\n")
    shape = r"[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
    if len(compact) % 4 or not re.fullmatch(shape, compact):
        return None
    return base64.b64decode(compact)


@given(st.text(alphabet="AQYWIab+/=\t \r\né", max_size=24))
def test_base64_decodes_like_the_rule_for_any_text(text: str) -> None:
    assert decode_base64(text) == _slow_decode(text)


@given(st.binary())
def test_base64_round_trips_any_bytes(data: bytes) -> None:
    assert decode_base64(base64.b64encode(data).decode()) == data


def read_all(reader: LineReader) -> list[str]:
    lines = []
    while (line := reader.next_event()) is not None:
        lines.append(line)
    return lines


def test_lines_lose_their_lf_and_a_trailing_cr() -> None:
    reader = LineReader()
    reader.receive_data(b"one\ntwo\r\nthr")
    assert read_all(reader) == ["one", "two"]
    reader.receive_data(b"ee\n")
    assert read_all(reader) == ["three"]


def test_a_line_exactly_at_the_limit_including_its_lf_is_accepted() -> None:
    reader = LineReader(max_line_length=8)
    reader.receive_data(b"1234567\n")
    assert read_all(reader) == ["1234567"]


def test_a_complete_line_over_the_limit_is_a_protocol_error() -> None:
    reader = LineReader(max_line_length=8)
    reader.receive_data(b"12345678\n")
    with pytest.raises(ProtocolError):
        reader.next_event()


def test_an_overlong_line_is_refused_before_its_end_arrives() -> None:
    reader = LineReader(max_line_length=8)
    reader.receive_data(b"1234567")
    assert reader.next_event() is None
    reader.receive_data(b"8")
    with pytest.raises(ProtocolError):
        reader.next_event()


def test_the_default_limit_is_dovecots_16384_bytes_including_the_lf() -> None:
    reader = LineReader()
    reader.receive_data(b"x" * 16383 + b"\n" + b"y" * 16384)
    assert reader.next_event() == "x" * 16383
    with pytest.raises(ProtocolError):
        reader.next_event()


def test_a_nul_byte_in_a_line_is_a_protocol_error() -> None:
    reader = LineReader()
    reader.receive_data(b"AUTH\t1\0\n")
    with pytest.raises(ProtocolError):
        reader.next_event()


def test_undecodable_bytes_survive_as_surrogates() -> None:
    reader = LineReader()
    reader.receive_data(b"caf\xe9\n")
    line = reader.next_event()
    assert line is not None and line.encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_end_of_stream_drops_a_partial_line_and_refuses_more_data() -> None:
    reader = LineReader()
    reader.receive_data(b"done\npartial")
    reader.receive_data(b"")
    assert read_all(reader) == ["done"]
    assert reader.eof
    with pytest.raises(RuntimeError):
        reader.receive_data(b"more")
