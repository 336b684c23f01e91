"""Log formatting: text for a terminal, one JSON object per line for journald/collectors.

Decision lines (auth/engine.py) carry their fields in ``record.decision`` (request id,
front end, service, mechanism, user, remote IP, result, reason); in JSON they
become top-level keys, so fail2ban or a log shipper can match them without
parsing prose. Never a password or a hash: the engine does not put them there.

**One record, one line.** Log lines carry what clients sent (a service name, a
user name, a Dovecot ``rip``), and a client that smuggles a newline in (JSON's
``\\n``, Dovecot's ``\\001n`` escape) would otherwise write a line of its own
choosing: a forged "accepted", or a failure that frames someone else's address
for fail2ban. :class:`TextFormatter` therefore escapes every control character
(C0, DEL, C1, U+2028/U+2029) and every lone surrogate in every field of the line,
and indents a traceback's lines with ``"  | "``, so that a line starting with a
timestamp is always a record mailwarden wrote. JSON lines are safe by
construction (``json.dumps`` escapes control characters).
"""

from __future__ import annotations

import datetime
import json
import logging
import re

# Control characters, Unicode line and paragraph separators, lone surrogates
# (from surrogateescape-decoded input; stderr could not even encode them).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE = re.compile("[\ud800-\udfff]")
#: What starts each further line of one record (a traceback).
CONTINUATION = "  | "


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a backslash escape."""
    return _UNSAFE.sub(_escape_one, text)


class TextFormatter(logging.Formatter):
    """``<time> [<pid>] <LEVEL> <logger>: <message>``, one line per record (see above)."""

    def __init__(self, *, with_pid: bool = False) -> None:
        pid = "[%(process)d] " if with_pid else ""
        super().__init__("%(asctime)s " + pid + "%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = escape_controls(self.formatMessage(record))
        blocks: list[str] = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            blocks.append(record.exc_text)
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in blocks:
            for part in block.split("\n"):
                line += "\n" + CONTINUATION + escape_controls(part)
        return line


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ["pid"], decision fields...}``."""

    def __init__(self, *, with_pid: bool = False) -> None:
        super().__init__()
        self.with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        data: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.with_pid:
            data["pid"] = record.process
        decision = getattr(record, "decision", None)
        if isinstance(decision, dict):
            data.update(decision)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        text = json.dumps(data, ensure_ascii=False, default=str)
        # A lone surrogate stays a JSON escape: stderr could not encode it.
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
