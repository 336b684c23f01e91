"""The Lat/Long parser: every seed format, both hemispheres, boundaries and garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.accounts.position import (
    format_degrees,
    parse_coordinate,
    parse_position,
    parse_position_line,
)
from mailwarden.errors import FieldError


@pytest.mark.parametrize(
    ("lat", "long", "stored", "decimal"),
    [
        # standard forms, stored exactly as given
        ("52.5", "13.405", ("52.5", "13.405"), ("+52.50", "+13.41")),
        ("+52.52", "-013.405", ("+52.52", "-013.405"), ("+52.52", "-13.41")),
        ("5230.5", "-01324.3", ("5230.5", "-01324.3"), ("+52.51", "-13.41")),
        ("+523112.5", "0132418", ("+523112.5", "0132418"), ("+52.52", "+13.41")),
        ("-3352", "15112.6", ("-3352", "15112.6"), ("-33.87", "+151.21")),
        # DDxMM.MMMM
        ("52n30.5", "13e24.3", ("+5230.5", "+1324.3"), ("+52.51", "+13.41")),
        ("33S52", "151E12.6", ("-3352", "+15112.6"), ("-33.87", "+151.21")),
        ("5n3", "1w5", ("+0503", "-0105"), ("+5.05", "-1.08")),
        # DD:MM.MMMM x, with and without the space
        ("52:30.5 N", "13:24.3 w", ("+5230.5", "-1324.3"), ("+52.51", "-13.41")),
        ("33:52s", "151:12.6e", ("-3352", "+15112.6"), ("-33.87", "+151.21")),
        # DD:MM:SS.SSS x
        ("52:31:12.5 n", "13:24:18 E", ("+523112.5", "+132418"), ("+52.52", "+13.41")),
        ("33:51:54s", "151:12:36.5 e", ("-335154", "+1511236.5"), ("-33.87", "+151.21")),
        # DD.DDD x (the original accepts it too)
        ("52.5 N", "13.4w", ("+52.5", "-13.4"), ("+52.50", "-13.40")),
    ],
)
def test_every_seed_format_parses_to_the_standard_form_and_decimal_degrees(
    lat: str, long: str, stored: tuple[str, str], decimal: tuple[str, str]
) -> None:
    pos = parse_position(lat, long)
    assert (pos.latitude, pos.longitude) == stored
    assert (format_degrees(pos.latitude_decimal), format_degrees(pos.longitude_decimal)) == decimal
    assert pos.decimal == (pos.latitude_decimal, pos.longitude_decimal)


def test_the_standard_form_of_a_converted_value_reads_back_to_the_same_degrees() -> None:
    for lat, long in [("52:31:12.5s", "13:24:18w"), ("52n30.5", "13e24.3"), ("5:3.5 N", "1:2 e")]:
        first = parse_position(lat, long)
        again = parse_position(first.latitude, first.longitude)
        assert again == first


@pytest.mark.parametrize(
    ("lat", "long"),
    [
        ("90", "180"),
        ("-90", "-180"),
        ("+9000", "-18000"),
        ("900000", "1800000"),
        ("90:00:00 N", "180:00:00.000 W"),
        ("0", "0"),
        ("0:59.9999 s", "179:59:59.999 e"),
    ],
)
def test_boundary_values_are_accepted(lat: str, long: str) -> None:
    parse_position(lat, long)


@pytest.mark.parametrize(
    ("lat", "long", "complaint"),
    [
        ("90.00001", "0", "beyond 90"),
        ("-91", "0", "beyond 90"),
        ("9001", "0", "beyond 90"),
        ("90:00:01 n", "0", "beyond 90"),
        ("95", "13", "beyond 90"),  # the original stored this
        ("0", "180.5", "beyond 180"),
        ("0", "200", "beyond 180"),  # the original read this as 2 degrees
        ("0", "18001", "beyond 180"),
        ("5260", "0", "minutes must be below 60"),
        ("52:60 n", "0", "minutes must be below 60"),
        ("52:30:60 n", "0", "seconds must be below 60"),
        ("523060", "0", "seconds must be below 60"),
        ("52e30", "0", "hemisphere must be N or S"),
        ("0", "13n24", "hemisphere must be E or W"),
        ("52:31:12:5n", "0", "accepted form"),  # the original silently stored +00
        ("12.3:4n", "0", "accepted form"),
        ("52,5", "0", "accepted form"),
        ("52.5.1", "0", "accepted form"),
        ("+-52", "0", "accepted form"),
        ("52n", "13", None),
        ("", "0", "not a position"),
        ("1" * 40, "0", "not a position"),
        ("12345678", "0", "accepted form"),
        ("five", "0", "accepted form"),
    ],
)
def test_garbage_and_out_of_range_values_are_refused_with_a_reason(
    lat: str, long: str, complaint: str | None
) -> None:
    if complaint is None:  # a control row: this one is fine (52 degrees north)
        assert parse_position(lat, long).latitude == "+52"
        return
    with pytest.raises(FieldError, match=complaint):
        parse_position(lat, long)


def test_decimals_are_rounded_half_away_from_zero_not_by_binary_floats() -> None:
    assert format_degrees(13.405) == "+13.41"
    assert format_degrees(-13.405) == "-13.41"
    assert format_degrees(0.0) == "+0.00"
    assert format_degrees(-0.001) == "-0.00"


def test_position_line_reports_how_it_parsed() -> None:
    pos = parse_position_line("Lat: 52:30.5 N Long: 13:24.3 E")
    assert pos is not None
    assert pos.describe() == "Position set to +5230.5/+1324.3 (+52.51/+13.41 decimal degrees)"
    assert parse_position_line("LAT: 52.5   long: -13.4") is not None
    assert parse_position_line("lat:52.5, long:13.4") is not None


def test_a_line_not_starting_with_lat_is_not_a_position_line() -> None:
    assert parse_position_line("ircnick: lat") is None
    assert parse_position_line("latitude is nice") is None


def test_a_malformed_position_line_halts_with_the_syntax() -> None:
    with pytest.raises(FieldError, match="Lat: <latitude> Long: <longitude>"):
        parse_position_line("Lat: 52.5")
    with pytest.raises(FieldError, match="beyond 90"):
        parse_position_line("Lat: 95 Long: 13")


def test_an_unknown_axis_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_coordinate("1", "altitude")


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_text_gives_a_position_or_mailgate_error(lat: str, long: str) -> None:
    try:
        pos = parse_position(lat, long)
    except FieldError:
        return
    assert -90 <= pos.latitude_decimal <= 90
    assert -180 <= pos.longitude_decimal <= 180


@given(st.text(max_size=80))
def test_any_line_gives_a_position_none_or_mailgate_error(line: str) -> None:
    with contextlib.suppress(FieldError):
        parse_position_line(line)


@given(
    st.integers(0, 89),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from("nsNS"),
    st.integers(0, 179),
    st.integers(0, 59),
    st.sampled_from("ewEW"),
)
def test_dms_and_dm_forms_agree_with_arithmetic(
    d: int, m: int, s: int, ns: str, ld: int, lm: int, ew: str
) -> None:
    pos = parse_position(f"{d}:{m}:{s} {ns}", f"{ld}:{lm}{ew}")
    sign = -1 if ns in "sS" else 1
    assert pos.latitude_decimal == pytest.approx(sign * (d + m / 60 + s / 3600))
    lsign = -1 if ew in "wW" else 1
    assert pos.longitude_decimal == pytest.approx(lsign * (ld + lm / 60))
