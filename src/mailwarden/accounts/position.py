"""Latitude and longitude as the mail gateway's ``Lat: ... Long: ...`` line gives them: pure.

Interface (used by ``mailgate.changes``)::

    parse_position(lat: str, long: str) -> Position      # raises FieldError
    parse_position_line(line: str) -> Position | None    # None: not a position line

Accepted forms (D degrees, M minutes, S seconds, x a hemisphere letter; the
letters and ``Lat:``/``Long:`` are case-insensitive):

* standard forms, stored exactly as given: ``+-DDD.DDDDD``, ``+-DDDMM.MMMM``,
  ``+-DDDMMSS.SSSS``. Which one is meant follows from the number of digits
  before the dot: 1-3 degrees, 4-5 degrees and minutes, 6-7 degrees, minutes and
  seconds. (The original gateway also re-read a plain value >= 180 as DDDMM, so
  ``Long: 200`` became 2 degrees; here 200 is 200 degrees and refused.)
* other forms, converted to a signed standard form (``+`` for n/e, ``-`` for
  s/w; degrees, minutes and seconds two digits at least): ``DDxMM.MMMM``,
  ``DD.DDDD x``, ``DD:MM.MMMM x``, ``DD:MM:SS.SSS x`` -- e.g. ``52:31:12.5n``
  becomes ``+523112.5``.

Unlike the original, a latitude beyond 90 or a longitude beyond 180 degrees,
minutes or seconds of 60 or more, a hemisphere letter of the wrong axis and any
unrecognised form raise :class:`FieldError`; nothing silently becomes 0.
The decimal degrees are computed exactly (``decimal.Decimal``) and printed with
a sign and two places rounded half away from zero, so ``13.405`` prints
``+13.41`` (the original's binary floats printed ``+13.40``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from mailwarden.errors import FieldError

__all__ = ["Position", "parse_coordinate", "parse_position", "parse_position_line"]

# Longest accepted coordinate text: a bound on work, far above any real value.
MAX_COORDINATE_LENGTH = 32

_STANDARD = re.compile(r"^([+-]?)(\d{1,7})(?:\.(\d{1,10}))?$")
_NUM = r"\d{1,2}(?:\.\d{1,10})?"
_FORMS = (
    # DDxMM.MMMM
    re.compile(rf"^(?P<d>\d{{1,3}})(?P<x>[nsew])(?P<m>{_NUM})$"),
    # DD.DDDD x
    re.compile(r"^(?P<d>\d{1,3}(?:\.\d{1,10})?) ?(?P<x>[nsew])$"),
    # DD:MM.MMMM x
    re.compile(rf"^(?P<d>\d{{1,3}}):(?P<m>{_NUM}) ?(?P<x>[nsew])$"),
    # DD:MM:SS.SSS x
    re.compile(rf"^(?P<d>\d{{1,3}}):(?P<m>\d{{1,2}}):(?P<s>{_NUM}) ?(?P<x>[nsew])$"),
)
_LINE = re.compile(
    r"^lat:\s*(?P<lat>[^\s,]+(?: [ns])?)\s*,?\s*long:\s*(?P<long>\S+(?: [ew])?)$", re.IGNORECASE
)
_SIXTY = Decimal(60)
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """A parsed position.

    ``latitude`` and ``longitude`` are the standard-form strings to store
    (``Profile.latitude``/``longitude``); ``latitude_decimal`` and
    ``longitude_decimal`` the same values in signed decimal degrees.
    """

    latitude: str
    longitude: str
    latitude_decimal: float
    longitude_decimal: float

    @property
    def decimal(self) -> tuple[float, float]:
        """``(latitude, longitude)`` in decimal degrees."""
        return (self.latitude_decimal, self.longitude_decimal)

    def describe(self) -> str:
        """The report line: ``Position set to +5230/+01324 (+52.50/+13.40 decimal degrees)``."""
        return (
            f"Position set to {self.latitude}/{self.longitude} "
            f"({format_degrees(self.latitude_decimal)}/{format_degrees(self.longitude_decimal)}"
            " decimal degrees)"
        )


def format_degrees(value: float | Decimal) -> str:
    """Signed, two places, half away from zero: ``+13.41``, ``-0.50``."""
    d = value if isinstance(value, Decimal) else Decimal(repr(value))
    q = d.quantize(_CENT, rounding=ROUND_HALF_UP)
    text = f"{abs(q):.2f}"
    return ("-" if d < 0 else "+") + text


def _standard_value(text: str, axis: str) -> Decimal:
    """Decimal degrees of a standard-form string (already matched by _STANDARD)."""
    m = _STANDARD.match(text)
    if m is None:
        raise FieldError(f"{axis} {text!r} is not in a standard form")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    fraction = Decimal(f"0.{frac}") if frac else Decimal(0)
    n = len(whole)
    if n <= 3:
        value = Decimal(whole) + fraction
    elif n <= 5:
        deg, minutes = int(whole[:-2]), Decimal(whole[-2:]) + fraction
        _check_sixty(minutes, "minutes", axis, text)
        value = deg + minutes / _SIXTY
    else:
        whole_minutes = Decimal(whole[-4:-2])
        seconds = Decimal(whole[-2:]) + fraction
        _check_sixty(whole_minutes, "minutes", axis, text)
        _check_sixty(seconds, "seconds", axis, text)
        value = int(whole[:-4]) + whole_minutes / _SIXTY + seconds / 3600
    return -value if sign == "-" else value


def _check_sixty(value: Decimal, what: str, axis: str, text: str) -> None:
    if value >= _SIXTY:
        raise FieldError(f"{axis} {text!r}: {what} must be below 60")


def _pad(part: str) -> str:
    """Two digits before the dot at least: ``5`` -> ``05``, ``5.5`` -> ``05.5``."""
    whole, dot, frac = part.partition(".")
    return whole.zfill(2) + dot + frac


def parse_coordinate(text: str, axis: str) -> tuple[str, float]:
    """Parse one coordinate; ``axis`` is ``"latitude"`` or ``"longitude"``.

    Returns ``(standard form, decimal degrees)``; raises :class:`FieldError`
    for anything not in an accepted form or out of range.
    """
    if axis not in ("latitude", "longitude"):
        raise ValueError(f"axis must be latitude or longitude, not {axis!r}")
    limit, letters = (90, "ns") if axis == "latitude" else (180, "ew")
    raw = text.strip()
    if not raw or len(raw) > MAX_COORDINATE_LENGTH:
        raise FieldError(f"{axis} {text[:MAX_COORDINATE_LENGTH]!r} is not a position")
    standard = raw if _STANDARD.match(raw) else _convert(raw.lower(), axis, letters, text)
    value = _standard_value(standard, axis)
    if abs(value) > limit:
        raise FieldError(f"{axis} {raw!r} is beyond {limit} degrees")
    return standard, float(value)


def _convert(raw: str, axis: str, letters: str, text: str) -> str:
    for form in _FORMS:
        m = form.match(raw)
        if m is None:
            continue
        parts = m.groupdict()
        hemisphere = parts["x"]
        if hemisphere not in letters:
            raise FieldError(
                f"{axis} {text!r}: the hemisphere must be {' or '.join(letters.upper())}"
            )
        sign = "-" if hemisphere in "sw" else "+"
        out = sign + _pad(parts["d"])
        for key, what in (("m", "minutes"), ("s", "seconds")):
            part = parts.get(key)
            if part is None:
                continue
            _check_sixty(Decimal(part), what, axis, text)
            out += _pad(part)
        return out
    raise FieldError(
        f"{axis} {text!r} is not in an accepted form "
        "(+-DDD.DDDDD, +-DDDMM.MMMM, +-DDDMMSS.SSSS, DDxMM.MMMM, DD:MM.MMMM x, DD:MM:SS.SSS x)"
    )


def parse_position(lat: str, long: str) -> Position:
    """Parse a latitude and a longitude in any accepted form; raises FieldError."""
    lat_std, lat_dec = parse_coordinate(lat, "latitude")
    long_std, long_dec = parse_coordinate(long, "longitude")
    return Position(
        latitude=lat_std,
        longitude=long_std,
        latitude_decimal=lat_dec,
        longitude_decimal=long_dec,
    )


def parse_position_line(line: str) -> Position | None:
    """Parse ``Lat: xxx Long: xxx``.

    ``None`` when the line does not start with ``lat:`` (some other command);
    :class:`FieldError` when it does but is malformed.
    """
    text = line.strip()
    if text[:4].lower() != "lat:":
        return None
    m = _LINE.match(text)
    if m is None:
        raise FieldError("a position line is 'Lat: <latitude> Long: <longitude>'")
    return parse_position(m.group("lat"), m.group("long"))
