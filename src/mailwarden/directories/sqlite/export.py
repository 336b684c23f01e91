"""Every account of a SQLite directory formatted as text, in uid order, by worker processes.

An export spends its time in Python: decoding a row into an
:class:`~mailwarden.model.Account` costs about 13 µs and formatting it as a
passwd-file line about 10 µs, and one process does both under one GIL, on one
core. Here the uid keys are cut into slices of :data:`SLICE` accounts (the
parent finds where each ends: an index walk in SQLite's C, no rows decoded),
and ``workers`` processes each read and format whole slices, with their own
connections. The parent only writes the text it gets back, slice after slice in
key order, so the output is byte for byte what one process writes (the same
statement order, the same formatter).

Memory stays flat: slice ``i`` goes to worker ``i % workers``, each worker has at
most :data:`AHEAD` slices asked of it, and a worker that has formatted a slice
waits in its ``send`` until the parent takes it. So at most ``workers * AHEAD``
slices are in flight, whatever the size of the directory.

Processes. A worker is a new interpreter (``python -m
mailwarden.directories.sqlite.exportworker``, as the hashing workers are started:
never a ``fork`` of this process, which may have threads), talking over a socket
pair in multiprocessing's frames. It ignores SIGINT (an interrupt reaches the
parent, which stops it) and is always reaped: asked to stop, then terminated, then
killed, each step waited for at most :data:`REAP_TIMEOUT` seconds. An answer not
given within ``answer_timeout`` seconds, a worker that exits, or one whose read
fails raises :class:`~mailwarden.errors.DirectoryUnavailable`: the caller writes no
file (an export to a file replaces it only once complete) and exits as for any
failed read.

Consistency. As the one-process export, which reads a page at a time, this is no
snapshot: each slice is one read transaction. Slices are ranges of keys, so
every account is in exactly one of them; one added or removed while the export
runs may or may not be in it.

A directory with fewer than ``parallel_from`` accounts, or ``workers`` below 2,
is read in this process, slice by slice, with the same code.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from mailwarden.directories.base import Refusal
from mailwarden.directories.sqlite.rows import account_from_row, read_error
from mailwarden.errors import AccountError, DirectoryUnavailable
from mailwarden.loop import tune_gc
from mailwarden.model import Account

#: Accounts per slice: about a megabyte of passwd-file text.
SLICE = 10_000
#: Slices asked of one worker at a time (one formatting, one waiting).
AHEAD = 2
#: Below this many accounts the workers would cost more to start than they save.
PARALLEL_FROM = 50_000
#: Seconds a worker may take to answer for one slice (normally well under one).
ANSWER_TIMEOUT = 300.0
#: Seconds each step of stopping a worker (stop, terminate, kill) is waited for.
REAP_TIMEOUT = 5.0
#: What a worker runs (``python -m``; it is told the rest over its socket).
WORKER_MODULE = "mailwarden.directories.sqlite.exportworker"

#: The text for one account (a line and its end); AccountError leaves the account out.
Formatter = Callable[[Account], str]

# The key of the last account of a slice: the size-th uid key after the last slice's.
SLICE_END = """SELECT login FROM logins WHERE space = 'uid' AND login > ?
    ORDER BY login LIMIT 1 OFFSET ?"""
# The accounts of a slice, in key order (the order Directory.iterate gives).
_ACCOUNTS = """SELECT v.* FROM logins AS l JOIN account_rows AS v ON v.id = l.account_id
    WHERE l.space = 'uid' AND l.login > ?"""
SLICE_TO = _ACCOUNTS + " AND l.login <= ? ORDER BY l.login"
SLICE_FROM = _ACCOUNTS + " ORDER BY l.login"


@dataclass(frozen=True, slots=True, kw_only=True)
class Slice:
    """The uid keys after ``after`` up to and including ``upto`` (None: to the end)."""

    after: str
    upto: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Formatted:
    """One slice as text: ``written`` accounts; those the formatter refused, in order."""

    text: str
    written: int
    skipped: tuple[Refusal, ...]


def open_reader(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection to the directory file (as the directory's readers open)."""
    try:
        conn = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=timeout, isolation_level=None
        )
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise read_error(path, exc) from exc
    return conn


def slices(conn: sqlite3.Connection, path: Path, size: int = SLICE) -> Iterator[Slice]:
    """The slices of ``size`` accounts that cover every uid key, in order, found as
    they are asked for (the last one is open-ended)."""
    after = ""
    while True:
        try:
            row = conn.execute(SLICE_END, (after, size - 1)).fetchone()
        except sqlite3.Error as exc:
            raise read_error(path, exc) from exc
        upto: str | None = None if row is None else row[0]
        yield Slice(after=after, upto=upto)
        if upto is None:
            return
        after = upto


def format_slice(
    conn: sqlite3.Connection, path: Path, part: Slice, formatter: Formatter
) -> Formatted:
    """The accounts of ``part`` through ``formatter``; a row that cannot be read or
    decoded raises DirectoryUnavailable (as the directory's reads do)."""
    texts: list[str] = []
    skipped: list[Refusal] = []
    try:
        if part.upto is None:
            rows = conn.execute(SLICE_FROM, (part.after,))
        else:
            rows = conn.execute(SLICE_TO, (part.after, part.upto))
        for row in rows:
            try:
                account = account_from_row(row)
            except (ValueError, TypeError, KeyError) as exc:
                raise read_error(path, exc) from exc
            try:
                texts.append(formatter(account))
            except AccountError as exc:
                skipped.append(Refusal(uid=account.uid, message=str(exc)))
    except sqlite3.Error as exc:
        raise read_error(path, exc) from exc
    return Formatted(text="".join(texts), written=len(texts), skipped=(*skipped,))


def formatted(
    path: Path,
    formatter: Formatter,
    *,
    timeout: float,
    workers: int,
    size: int | None = None,
    parallel_from: int | None = None,
    answer_timeout: float = ANSWER_TIMEOUT,
) -> Generator[Formatted, None, None]:
    """Every account of the directory at ``path``, a slice at a time, in uid order
    (see the module docstring). ``timeout``: seconds a statement waits for a lock;
    ``size`` and ``parallel_from``: :data:`SLICE` and :data:`PARALLEL_FROM` unless
    given. ``formatter`` must be a module-level function: workers get it by name.
    Close the generator (or run it to its end): that stops the workers."""
    size = SLICE if size is None else size
    parallel_from = PARALLEL_FROM if parallel_from is None else parallel_from
    conn = open_reader(path, timeout)
    try:
        parts = slices(conn, path, size)
        if workers < 2 or _fewer_than(conn, path, parallel_from):
            for part in parts:
                yield format_slice(conn, path, part, formatter)
        else:
            yield from _in_workers(path, formatter, parts, timeout, workers, answer_timeout)
    finally:
        conn.close()


def _fewer_than(conn: sqlite3.Connection, path: Path, count: int) -> bool:
    try:
        return conn.execute(SLICE_END, ("", max(count - 1, 0))).fetchone() is None
    except sqlite3.Error as exc:
        raise read_error(path, exc) from exc


@dataclass(slots=True)
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    conn: Connection


def _start(number: int, path: Path, timeout: float, formatter: Formatter) -> _Worker:
    """Worker ``number``: a new interpreter, given its end of a socket pair."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
            [sys.executable, "-m", WORKER_MODULE, str(theirs.fileno())],
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
        )
    except OSError as exc:
        ours.close()
        raise DirectoryUnavailable(f"{path}: export worker {number} did not start: {exc}") from exc
    finally:
        theirs.close()
    worker = _Worker(number, process, Connection(ours.detach()))
    try:
        worker.conn.send((str(path), timeout, formatter))
    except BaseException as exc:  # a formatter pickle cannot name, say: reaped all the same
        _reap([worker])
        if isinstance(exc, OSError):
            raise _gone(path, worker) from exc
        raise
    return worker


def _in_workers(
    path: Path,
    formatter: Formatter,
    parts: Iterator[Slice],
    timeout: float,
    count: int,
    answer_timeout: float,
) -> Iterator[Formatted]:
    workers: list[_Worker] = []
    try:
        for number in range(1, count + 1):
            workers.append(_start(number, path, timeout, formatter))
        waiting: deque[_Worker] = deque()  # whose answer comes next, in slice order
        asked = 0

        def ask() -> bool:
            nonlocal asked
            part = next(parts, None)
            if part is None:
                return False
            worker = workers[asked % count]
            asked += 1
            try:
                worker.conn.send(part)
            except OSError as exc:
                raise _gone(path, worker) from exc
            waiting.append(worker)
            return True

        while len(waiting) < count * AHEAD and ask():
            pass
        while waiting:
            worker = waiting.popleft()
            answer = _answer(path, worker, answer_timeout)
            ask()
            yield answer
    finally:
        _reap(workers)


def _answer(path: Path, worker: _Worker, answer_timeout: float) -> Formatted:
    """The next answer of ``worker``: its slice, or the failure it reported."""
    try:
        if not worker.conn.poll(answer_timeout):
            raise DirectoryUnavailable(
                f"{path}: export worker {worker.number} gave no answer in {answer_timeout:g} s"
            )
        answer: Formatted | str = worker.conn.recv()
    except (EOFError, OSError) as exc:
        raise _gone(path, worker) from exc
    if isinstance(answer, str):
        raise DirectoryUnavailable(f"{path}: export worker {worker.number}: {answer}")
    return answer


def _gone(path: Path, worker: _Worker) -> DirectoryUnavailable:
    try:
        code: int | None = worker.process.wait(REAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        code = None
    how = "did not stop" if code is None else f"exited with code {code}"
    return DirectoryUnavailable(f"{path}: export worker {worker.number} {how} before its answer")


def _reap(workers: list[_Worker]) -> None:
    """Stop every worker, and wait for each (bounded; see the module docstring)."""
    for worker in workers:
        with contextlib.suppress(OSError):  # already gone: reaped below all the same
            worker.conn.send(None)
        # Closed at once, so a worker blocked sending an answer nobody will read
        # gets a broken pipe and ends instead of waiting to be terminated.
        worker.conn.close()
    for worker in workers:
        process = worker.process
        for stop in (None, process.terminate, process.kill):
            if stop is not None:
                stop()
            try:
                process.wait(REAP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue


def work(conn: Connection) -> None:
    """A worker process (exportworker.py): told the file, the statement timeout and
    the formatter, it formats each slice asked for and sends it back, until asked to
    stop (None) or the parent is gone. A failure is sent as its message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_gc()  # as the one-process export: a slice allocates as a busy daemon does
    reader: sqlite3.Connection | None = None
    try:
        path, timeout, formatter = conn.recv()
        database = Path(path)
        while True:
            part: Slice | None = conn.recv()
            if part is None:
                return
            answer: Formatted | str
            try:
                if reader is None:
                    reader = open_reader(database, timeout)
                answer = format_slice(reader, database, part, formatter)
            except DirectoryUnavailable as exc:
                answer = str(exc).removeprefix(f"{database}: ")
            except Exception as exc:  # a bug: the parent reports it and stops
                answer = f"{type(exc).__name__}: {exc}"
            conn.send(answer)
    except (EOFError, OSError):
        return  # the parent stopped listening: nothing left to do
    finally:
        if reader is not None:
            reader.close()
        conn.close()
