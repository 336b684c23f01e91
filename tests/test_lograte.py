"""Repeated backend errors are logged at a bounded rate, with a count."""

from __future__ import annotations

import logging

import pytest

from mailwarden.lograte import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_key_and_interval_then_the_count_of_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.lograte"), interval=10.0, clock=clock)
    caplog.set_level(logging.WARNING, logger="test.lograte")
    written = [limited.warning("ldap://a", "server %s failed", "a") for _ in range(150)]
    assert written == [True] + [False] * 149
    assert limited.warning("ldap://b", "server %s failed", "b")  # another key: its own line
    clock.now += 10.0
    assert limited.warning("ldap://a", "server %s failed", "a")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "server a failed",
        "server b failed",
        "server a failed (149 more like it since the last such line)",
    ]


def test_clearing_a_key_reports_what_was_left_out_and_starts_afresh() -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.lograte"), interval=10.0, clock=clock)
    for _ in range(5):
        limited.error("redis", "down")
    assert limited.clear("redis") == 4
    assert limited.clear("redis") == 0
    assert limited.error("redis", "down")  # a new episode is written at once
