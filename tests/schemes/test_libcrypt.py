"""The ctypes binding to libxcrypt: results, failures, reentrancy, and the released GIL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailwarden.errors import MalformedHash
from mailwarden.schemes import libcrypt

# Dovecot's own self-test samples (password-scheme-crypt.c), which it runs before
# registering DES-CRYPT, SHA256-CRYPT and SHA512-CRYPT.
DOVECOT_SAMPLES = [
    (b"JB", b"JBOZ0DgmtucwE"),
    (
        b"$5$rounds=1000$0123456789abcdef",
        b"$5$rounds=1000$0123456789abcdef$K/DksR0DT01hGc8g/kt9McEgrbFMKi9qrb1jehe7hn4",
    ),
    (
        b"$6$rounds=1000$0123456789abcdef",
        b"$6$rounds=1000$0123456789abcdef$ZIAd5WqfyLkpvsVCVUU1GrvqaZTqvhJoouxdSqJO71l9Ld3tVrfOa"
        b"tEjarhghvEYADkq//LpDnTeO90tcbtHR1",
    ),
]


@pytest.mark.parametrize(("setting", "expected"), DOVECOT_SAMPLES)
def test_crypt_gives_dovecots_self_test_results(setting: bytes, expected: bytes) -> None:
    assert libcrypt.crypt(b"08/15!test~4711", setting) == expected
    assert libcrypt.crypt(b"08/15!test~4711", expected) == expected


@pytest.mark.parametrize("setting", [b"", b"*0", b"*1", b"$6$rounds=10$abc", b"$99$x", b"$2c$05$x"])
def test_a_setting_libxcrypt_refuses_is_malformed(setting: bytes) -> None:
    with pytest.raises(MalformedHash):
        libcrypt.crypt(b"secret", setting)


def test_phrases_with_nul_or_over_the_limit_are_the_callers_error() -> None:
    with pytest.raises(ValueError, match="NUL"):
        libcrypt.crypt(b"a\0b", b"$6$salt")
    with pytest.raises(ValueError, match="limited"):
        libcrypt.crypt(b"x" * libcrypt.MAX_PASSPHRASE_SIZE, b"$6$salt")
    assert libcrypt.crypt(b"x" * (libcrypt.MAX_PASSPHRASE_SIZE - 1), b"$6$salt").startswith(b"$6$")
    with pytest.raises(MalformedHash):
        libcrypt.crypt(b"x", b"$6$sa\0lt")


@pytest.mark.parametrize(
    ("prefix", "count", "start"),
    [
        (b"$6$", 0, b"$6$"),
        (b"$6$", 5000, b"$6$"),
        (b"$6$", 10, b"$6$rounds=1000$"),
        (b"$5$", 6000, b"$5$rounds=6000$"),
        (b"$1$", 0, b"$1$"),
        (b"$2b$", 5, b"$2b$05$"),
        (b"$y$", 0, b"$y$"),
    ],
)
def test_gensalt_makes_settings_crypt_accepts(prefix: bytes, count: int, start: bytes) -> None:
    setting = libcrypt.gensalt(prefix, count, bytes(range(16)))
    assert setting.startswith(start)
    assert libcrypt.crypt(b"secret", setting).startswith(setting)


def test_gensalt_with_an_empty_prefix_makes_a_des_salt() -> None:
    setting = libcrypt.gensalt(b"", 0, bytes(range(16)))
    assert len(setting) == 2
    assert len(libcrypt.crypt(b"secret", setting)) == 13


def test_gensalt_refuses_a_prefix_it_cannot_generate() -> None:
    with pytest.raises(ValueError, match="cannot make"):
        libcrypt.gensalt(b"$2x$", 5, bytes(16))


def test_concurrent_calls_do_not_share_state() -> None:
    # crypt_rn works in a per-call buffer: many threads at once get exactly the
    # single-threaded answers.
    settings = [libcrypt.gensalt(b"$5$", 1000, bytes([i]) * 16) for i in range(16)]
    phrases = [f"password {i}".encode() for i in range(16)]
    expected = [libcrypt.crypt(p, s) for p, s in zip(phrases, settings, strict=True)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            got = list(pool.map(libcrypt.crypt, phrases, settings))
            assert got == expected


def test_the_gil_is_released_while_libxcrypt_hashes() -> None:
    # The worker times one long crypt_rn call (~0.1 s of SHA-512 rounds) while this
    # thread keeps stamping the clock. Were the GIL held during the foreign call,
    # this thread could not run at all inside it except within one switch interval
    # (5 ms) of its start or end; so stamps in the middle 40% of the call prove it
    # was released. A yes/no property, not a speed target (see bench/hashing.py).
    call: dict[str, float] = {}
    started = threading.Event()

    def hash_slowly() -> None:
        started.set()
        call["start"] = time.perf_counter()
        libcrypt.crypt(b"secret", b"$6$rounds=300000$saltsaltsaltsalt")
        call["end"] = time.perf_counter()

    worker = threading.Thread(target=hash_slowly)
    worker.start()
    started.wait()
    stamps: list[float] = []
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    length = call["end"] - call["start"]
    low, high = call["start"] + 0.3 * length, call["end"] - 0.3 * length
    assert any(low < stamp < high for stamp in stamps)
