"""A hashing worker process: verifies password hashes for the daemon, one at a time.

``mailwarden serve`` starts ``hashing.workers`` of these (``python -m
mailwarden.hashing.worker``) and hands them the heavy verifications
(:class:`mailwarden.hashing.pool.ProcessPool`); docs/architecture.md says why processes
and not threads. The worker reads requests from stdin and writes one answer per
request to stdout, in the frames of :mod:`mailwarden.hashing.frames` (a 4-byte length,
then a ``marshal`` tuple). It has no state beyond the bytes it has read, and it
exits when stdin ends (the daemon closed it, or died). SIGINT is ignored: a
Ctrl-C in the daemon's terminal reaches the whole process group, and the daemon
decides when its workers stop.

Lean on purpose: only :mod:`mailwarden.schemes` is imported, so a worker starts
in a fraction of a second and stays small.
"""

from __future__ import annotations

import os
import signal

from mailwarden import schemes
from mailwarden.errors import SchemeError
from mailwarden.hashing.frames import Answer, Request, RequestReader, encode_frame
from mailwarden.schemes.base import StoredHash

READ_SIZE = 65536


def answer(request: Request) -> Answer:
    """``(id, verdict, "", "")``, or ``(id, None, error class, message)`` when the
    stored value cannot be verified (a SchemeError) or verifying failed otherwise."""
    request_id, password, scheme, encoding, data, user = request
    try:
        stored = StoredHash(scheme, encoding or None, data)
        return (request_id, schemes.verify(password, stored, user=user), "", "")
    except SchemeError as exc:
        return (request_id, None, type(exc).__name__, str(exc))
    except Exception as exc:  # the worker boundary: one bad request fails only itself
        return (request_id, None, "Exception", f"{type(exc).__name__}: {exc}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    reader = RequestReader()
    while True:
        data = os.read(0, READ_SIZE)
        if not data:
            return
        reader.receive_data(data)
        while (request := reader.next_event()) is not None:
            _write_all(1, encode_frame(answer(request)))


if __name__ == "__main__":
    main()
