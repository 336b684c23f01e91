"""The one feeding helper: every codec reads bytes the same way (``receive_data`` /
``next_event``, as h11 does), so every input is tried whole, byte by byte, and with
trailing data by the same code."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

E_co = TypeVar("E_co", covariant=True)
E = TypeVar("E")


class Codec(Protocol[E_co]):
    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> E_co | None: ...


def collect(conn: Codec[E], chunks: Iterable[bytes]) -> list[E]:
    """Every event produced while feeding ``chunks`` one after another."""
    events: list[E] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not None:
            events.append(event)
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def events_every_way(
    make: Callable[[], Codec[E]],
    data: bytes,
    *,
    trailing: bytes | None = None,
    end: bool = False,
) -> list[E]:
    """The events of ``data``, checked to be the same fed whole and byte by byte, and
    unchanged when an incomplete ``trailing`` message follows in the same read (for a
    codec that reads one message per connection, leave it out). ``end`` feeds the end
    of the stream (``b""``) last, for codecs whose message ends with the stream."""
    tail = [b""] if end else []
    whole = collect(make(), [data, *tail])
    assert collect(make(), [*bytewise(data), *tail]) == whole
    if trailing is not None:
        assert collect(make(), [data + trailing, *tail]) == whole
        assert collect(make(), [*bytewise(data + trailing), *tail]) == whole
    return whole
