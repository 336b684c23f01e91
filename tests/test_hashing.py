"""The Hasher's worker processes (serve) and its frames: real ``python -m
mailwarden.hashing.worker`` processes, killed and fed garbage."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from mailwarden import schemes
from mailwarden.errors import HashingUnavailable, MalformedHash, ProtocolError
from mailwarden.hashing import pool as hashing
from mailwarden.hashing.frames import MAX_FRAME, RequestReader, encode_frame
from mailwarden.hashing.pool import Hasher
from mailwarden.hashing.worker import answer

SHA512 = schemes.parse(schemes.generate(b"right", "SHA512-CRYPT", rounds=1000))


@pytest_asyncio.fixture
async def hasher() -> AsyncIterator[Hasher]:
    h = Hasher(workers=2, processes=True)
    await h.start()
    try:
        yield h
    finally:
        h.close()
        await h.wait_closed()


def _pool(h: Hasher) -> hashing.ProcessPool:
    pool = h._processes
    assert pool is not None
    return pool


async def test_worker_processes_verify_right_and_wrong_passwords(hasher: Hasher) -> None:
    pids = _pool(hasher).pids
    assert len(pids) == 2
    assert os.getpid() not in pids
    results = await asyncio.gather(
        *(hasher.verify(b"right" if n % 2 else b"wrong", SHA512) for n in range(40))
    )
    assert results == [bool(n % 2) for n in range(40)]


async def test_workers_start_with_the_first_expensive_hash() -> None:
    h = Hasher(workers=2, processes=True)
    try:
        assert await h.verify(b"pw", schemes.parse("{PLAIN}pw")) is True
        assert _pool(h).pids == []  # a cheap scheme runs inline
        results = await asyncio.gather(*(h.verify(b"right", SHA512) for _ in range(6)))
        assert results == [True] * 6
        assert len(_pool(h).pids) == 2  # one start for the whole burst
    finally:
        h.close()
        await h.wait_closed()


async def test_workers_that_cannot_start_are_a_temporary_failure_then_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Hasher(workers=1, processes=True)
    try:
        monkeypatch.setattr(sys, "executable", "/nonexistent/python")
        with pytest.raises(HashingUnavailable, match="cannot start"):
            await h.verify(b"right", SHA512)
        monkeypatch.undo()
        assert await h.verify(b"right", SHA512) is True
    finally:
        h.close()
        await h.wait_closed()


async def test_an_unusable_stored_value_is_a_scheme_error_from_the_worker(hasher: Hasher) -> None:
    broken = schemes.StoredHash("SHA512-CRYPT", None, "$6$salt$not*a*hash")
    with pytest.raises(MalformedHash):
        await hasher.verify(b"x", broken, heavy=True)
    assert await hasher.verify(b"right", SHA512) is True  # the worker is still there


async def test_a_killed_worker_fails_its_logins_temporarily_and_is_replaced(
    hasher: Hasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hashing, "RESTART_DELAY", 0.05)
    pool = _pool(hasher)
    slow = schemes.parse(schemes.generate(b"right", "SHA512-CRYPT", rounds=3_000_000))
    in_flight = [asyncio.ensure_future(hasher.verify(b"right", slow)) for _ in range(4)]
    await asyncio.sleep(0.2)
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    results = await asyncio.gather(*in_flight, return_exceptions=True)
    assert any(isinstance(r, HashingUnavailable) for r in results)
    assert all(r is True or isinstance(r, HashingUnavailable) for r in results)
    for _ in range(100):
        if len(pool.pids) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(pool.pids) == 2
    assert victim not in pool.pids
    assert await asyncio.gather(*(hasher.verify(b"right", SHA512) for _ in range(4))) == [True] * 4


async def test_closing_the_hasher_ends_the_worker_processes() -> None:
    h = Hasher(workers=2, processes=True)
    await h.start()
    pids = _pool(h).pids
    h.close()
    await h.wait_closed()
    assert not [pid for pid in pids if _running(pid)]
    with pytest.raises(HashingUnavailable):
        await h.verify(b"right", SHA512)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not reaped yet counts as ended.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_worker_answers_each_request_by_itself() -> None:
    ok = answer((7, b"right", SHA512.scheme, "", SHA512.data, ""))
    assert ok == (7, True, "", "")
    unknown = answer((8, b"x", "NO-SUCH-SCHEME", "", "data", ""))
    assert unknown[:3] == (8, None, "UnknownScheme")


@given(st.lists(st.binary(max_size=40), max_size=5), st.integers(min_value=1, max_value=50))
def test_frames_survive_any_split(passwords: list[bytes], step: int) -> None:
    requests = [(n, pw, "PLAIN", "", "data", "user") for n, pw in enumerate(passwords)]
    stream = b"".join(encode_frame(r) for r in requests)
    reader = RequestReader()
    got = []
    for start in range(0, len(stream), step):
        reader.receive_data(stream[start : start + step])
        while (request := reader.next_event()) is not None:
            got.append(request)
    assert got == requests
    assert reader.buffered == 0


@pytest.mark.parametrize(
    "frame",
    [
        (MAX_FRAME + 1).to_bytes(4, "big"),
        (3).to_bytes(4, "big") + b"\xff\xff\xff",
        encode_frame((1, True, "", "")),  # an answer where a request belongs
    ],
)
def test_a_broken_frame_is_a_protocol_error(frame: bytes) -> None:
    reader = RequestReader()
    reader.receive_data(frame)
    with pytest.raises(ProtocolError):
        reader.next_event()


@pytest.mark.parametrize("processes", [False, True])
async def test_past_the_queue_limit_a_verification_is_refused_at_once(processes: bool) -> None:
    h = Hasher(workers=1, queue_limit=2, processes=processes)
    slow = schemes.parse(schemes.generate(b"right", "SHA512-CRYPT", rounds=500_000))
    try:
        waiting = [asyncio.ensure_future(h.verify(b"right", slow)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(HashingUnavailable, match="queue full"):
            await h.verify(b"right", SHA512)
        assert await asyncio.gather(*waiting) == [True, True]
        assert h.pending == 0
        assert await h.verify(b"right", SHA512) is True
    finally:
        h.close()
        await h.wait_closed()
