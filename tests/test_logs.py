"""Decision log lines: structured JSON, never a secret, and per-request debug traces."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from mailwarden.engine import Engine
from mailwarden.logs import JsonFormatter
from tests.helpers import attempt


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collect]:
    handler = Collect()
    loggers = [logging.getLogger("mailwarden.auth"), logging.getLogger("mailwarden.debug")]
    old = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield handler
    for lg, (level, propagate) in zip(loggers, old, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)
        lg.propagate = propagate


async def test_a_decision_line_in_json_has_its_fields_and_no_password(
    engine: Engine, collected: Collect
) -> None:
    await engine.authenticate(
        attempt("alice", "Sup3rSecret!", remote_ip="192.0.2.1", session="abc", frontend="http")
    )
    lines = [JsonFormatter(with_pid=True).format(r) for r in collected.records]
    decisions = [json.loads(line) for line in lines if '"event": "auth"' in line]
    assert len(decisions) == 1
    d = decisions[0]
    assert d["request_id"] == "abc" and d["frontend"] == "http" and d["user"] == "alice"
    assert d["remote_ip"] == "192.0.2.1" and d["result"] == "denied"
    assert d["reason"] == "credentials" and d["level"] == "info" and "pid" in d
    assert "Sup3rSecret" not in "".join(lines)
    assert "$6$" not in "".join(lines)


async def test_a_debug_request_is_traced_step_by_step(engine: Engine, collected: Collect) -> None:
    await engine.authenticate(attempt("alice", "secret", session="s1"))
    assert not [r for r in collected.records if r.name == "mailwarden.debug"]
    await engine.authenticate(attempt("nobody", "Pw-Trace-9!", session="s2", debug=True))
    traces = [r.getMessage() for r in collected.records if r.name == "mailwarden.debug"]
    assert any("account: not found" in t for t in traces), traces
    assert all(t.startswith("session=s2 ") for t in traces)
    assert not any("Pw-Trace-9!" in t for t in traces)


def test_json_lines_escape_quotes_and_newlines() -> None:
    record = logging.LogRecord("mailwarden", logging.WARNING, __file__, 1, 'a "b"\nc', (), None)
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["message"] == 'a "b"\nc'
