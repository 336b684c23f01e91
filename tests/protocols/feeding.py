"""Feeding helpers: every input is tried whole, byte by byte, and with trailing data."""

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


def events_every_way(make: Callable[[], Codec[E]], data: bytes, *, trailing: bytes) -> list[E]:
    """The events of ``data``, checked to be the same fed whole and byte by byte, and
    unchanged when an incomplete ``trailing`` line follows in the same read."""
    whole = collect(make(), [data])
    assert collect(make(), bytewise(data)) == whole
    assert b"\n" not in trailing
    assert collect(make(), [data + trailing]) == whole
    assert collect(make(), bytewise(data + trailing)) == whole
    return whole
