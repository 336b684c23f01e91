"""Log formatting: text for a terminal, one JSON object per line for journald/collectors.

Decision lines (engine.py) carry their fields in ``record.decision`` (request id,
front end, service, mechanism, user, remote IP, result, reason); in JSON they
become top-level keys, so fail2ban or a log shipper can match them without
parsing prose. Never a password or a hash: the engine does not put them there.
"""

from __future__ import annotations

import datetime
import json
import logging


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
        return json.dumps(data, ensure_ascii=False, default=str)
