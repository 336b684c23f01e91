"""Decision log lines: structured JSON, never a secret, and per-request debug traces."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.app import setup_logging
from mailwarden.auth.engine import Engine
from mailwarden.frontends.http import start_http
from mailwarden.logs import CONTINUATION, JsonFormatter, TextFormatter
from tests.frontends.test_http_frontend import CONFIG as HTTP_CONFIG
from tests.frontends.test_http_frontend import CREDS, request
from tests.helpers import attempt, make_config


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


#: A line the text log writes for a record: it starts with the timestamp.
_RECORD_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
_FORGED = "2026-12-02 06:00:00,000 INFO mailwarden.auth: auth frontend=http service=imap"


def text_lines(records: list[logging.LogRecord]) -> list[str]:
    return "\n".join(TextFormatter().format(r) for r in records).split("\n")


@pytest.mark.parametrize(
    "smuggled", ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"]
)
async def test_a_line_break_in_the_service_cannot_forge_a_text_log_line(
    engine: Engine, collected: Collect, smuggled: str
) -> None:
    service = f"imap{smuggled}{_FORGED} user='root' result=accepted"
    await engine.authenticate(attempt("alice", "wrong", service=service, session="s9"))
    lines = text_lines(collected.records)
    # str.splitlines() is what a log reader may split on: every Unicode line break.
    assert len("\n".join(lines).splitlines()) == len(lines) == len(collected.records)
    assert all(_RECORD_LINE.match(line) for line in lines), lines
    assert "result=accepted" in lines[0] and "result=denied" in lines[0]


def test_every_field_and_the_traceback_are_escaped_and_the_traceback_is_indented() -> None:
    try:
        raise ValueError("bad\n" + _FORGED)
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "mailwarden.http\nx", logging.ERROR, __file__, 1, "a\x00b\x1b[2J\ud800", (), exc_info
    )
    lines = TextFormatter(with_pid=True).format(record).split("\n")
    assert lines[0].endswith("mailwarden.http\\nx: a\\x00b\\x1b[2J\\ud800")
    assert all(line.startswith(CONTINUATION) for line in lines[1:])
    assert any(line == CONTINUATION + _FORGED for line in lines)
    lines[0].encode("utf-8")  # stderr can write it: no lone surrogate left


async def test_a_json_body_with_a_newline_in_service_stays_one_line_in_the_daemons_log(
    engine: Engine,
) -> None:
    """The real setup_logging handler, the real HTTP listener, a hostile client."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    try:
        with contextlib.redirect_stderr(stream):
            setup_logging(make_config(log={"format": "text", "level": "info"}))
        server = await start_http(engine, HTTP_CONFIG, resolve=Path)
        try:
            body = json.dumps(
                {"username": "alice", "password": "x", "service": "imap\n" + _FORGED}
            ).encode()
            r = await request(
                server,
                "POST",
                "/api/v1/auth/json",
                body,
                headers={"Authorization": CREDS, "Content-Type": "application/json"},
            )
            assert r.status == 403
        finally:
            await server.close()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert lines and all(_RECORD_LINE.match(line) for line in lines), lines
    assert any("service=imap\\n2026-12-02" in line for line in lines), lines
