"""Every codec reads the same way (``receive_data`` / ``next_event``): one table, one
feeding helper, each input fed whole, byte by byte and with trailing data.

The codecs of the HTTP routes (nauthilus, nginx, admin) take a parsed request from
uvicorn, not a byte stream, and are not readers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailwarden.errors import ProtocolError
from mailwarden.hashing.frames import MAX_FRAME, AnswerReader, RequestReader, encode_frame
from mailwarden.model import Password
from mailwarden.protocols import checkpassword, control, saslauthd
from mailwarden.protocols import dovecot_libauth as libauth
from mailwarden.protocols.dovecot_client import AuthClientConnection, ClientCpid, ClientVersion
from mailwarden.protocols.dovecot_client import handshake as client_handshake
from mailwarden.protocols.dovecot_common import LineReader
from mailwarden.protocols.dovecot_master import AuthMasterConnection, MasterVersion, UserLookup
from mailwarden.protocols.dovecot_master import handshake as master_handshake
from tests.protocols.feeding import Codec, bytewise, collect, events_every_way

GREETING = client_handshake([("PLAIN", ("plaintext",))], spid=42, cuid=7, cookie=bytes(16))
HASH_REQUEST = (1, b"secret", "PLAIN", "", "data", "alice")


def _client() -> AuthClientConnection:
    return AuthClientConnection(mechanisms=["PLAIN"])


# (name, make, input, expected events, trailing data or None, feed the end of stream)
READERS: list[tuple[str, Callable[[], Codec[Any]], bytes, list[Any], bytes | None, bool]] = [
    ("dovecot lines", LineReader, b"one\ntwo\r\n", ["one", "two"], b"thr", False),
    (
        "dovecot client",
        _client,
        b"VERSION\t1\t2\nCPID\t7\n",
        [ClientVersion(major=1, minor=2), ClientCpid(pid=7)],
        b"AUTH\t1\tPLA",
        False,
    ),
    (
        "dovecot master",
        AuthMasterConnection,
        b"VERSION\t1\t0\nUSER\t1\talice\tservice=imap\n",
        [MasterVersion(major=1, minor=0), UserLookup(id=1, user="alice", service="imap")],
        b"USER\t2\tbo",
        False,
    ),
    (
        "libauth client replies",
        libauth.ClientReplies,
        GREETING + b"OK\t1\tuser=alice\tnologin\n",
        [libauth.AuthOk(user="alice", fields=(("nologin", None),))],
        b"FAIL\t1",
        False,
    ),
    (
        "libauth master replies",
        libauth.MasterReplies,
        master_handshake(spid=9) + b"USER\t1\talice\tuid=1000\n",
        [libauth.UserFound(user="alice", fields=(("uid", "1000"),))],
        b"USER\t1",
        False,
    ),
    (
        "saslauthd",
        saslauthd.RequestReader,
        saslauthd.encode_request(b"alice", b"secret", b"smtp", b"example.com"),
        [
            saslauthd.SaslauthdRequest(
                login="alice", password=Password(b"secret"), service="smtp", realm="example.com"
            )
        ],
        None,  # one request per connection: anything after it is an error
        False,
    ),
    (
        "control socket",
        control.LineReader,
        b'{"op": "status"}\n{"op": "reload"}\n',
        [b'{"op": "status"}', b'{"op": "reload"}'],
        b'{"op": "st',
        False,
    ),
    (
        "checkpassword fd 3",
        checkpassword.BlockReader,
        b"alice\0secret\0<1.2@host>\0",
        [
            checkpassword.CheckpasswordInput(
                login="alice", secret=b"secret", timestamp=b"<1.2@host>"
            )
        ],
        None,  # the block ends with the stream
        True,
    ),
    (
        "hashing requests",
        RequestReader,
        encode_frame(HASH_REQUEST) * 2,
        [HASH_REQUEST, HASH_REQUEST],
        b"\0\0\0",
        False,
    ),
    (
        "hashing answers",
        AnswerReader,
        encode_frame((1, True, "", "")) + encode_frame((2, None, "UnknownScheme", "x")),
        [(1, True, "", ""), (2, None, "UnknownScheme", "x")],
        b"\0",
        False,
    ),
]


@pytest.mark.parametrize(
    ("make", "data", "expected", "trailing", "end"),
    [row[1:] for row in READERS],
    ids=[row[0] for row in READERS],
)
def test_every_reader_gives_the_same_events_whole_byte_by_byte_and_with_trailing_data(
    make: Callable[[], Codec[Any]],
    data: bytes,
    expected: list[Any],
    trailing: bytes | None,
    end: bool,
) -> None:
    assert events_every_way(make, data, trailing=trailing, end=end) == expected


# (name, make, input that breaks the protocol, the error's words)
BROKEN: list[tuple[str, Callable[[], Codec[Any]], bytes, str]] = [
    ("dovecot lines: NUL", LineReader, b"AUTH\t1\0\n", "NUL"),
    ("dovecot client: bad VERSION", _client, b"VERSION\tx\n", "VERSION"),
    ("dovecot master: a client", AuthMasterConnection, b"VERSION\t1\t0\nCPID\t1\n", "client"),
    ("libauth: not Dovecot", libauth.ClientReplies, b"HELLO\t1\n", "not a Dovecot"),
    (
        "saslauthd: oversized field",
        lambda: saslauthd.RequestReader(max_field=16),
        b"\x00\x05alice\x04\x00",
        "longer than 16",
    ),
    (
        "saslauthd: trailing data",
        saslauthd.RequestReader,
        saslauthd.encode_request(b"a", b"b", b"c", b"d") + b"\0",
        "extra data",
    ),
    ("control: oversized line", control.LineReader, b"x" * (control.MAX_LINE + 1), "longer"),
    (
        "checkpassword: oversized",
        checkpassword.BlockReader,
        b"a" * (checkpassword.MAX_BLOCK + 1),
        "longer than",
    ),
    ("hashing: oversized frame", RequestReader, (MAX_FRAME + 1).to_bytes(4, "big"), "limit"),
    ("hashing: an answer as request", RequestReader, encode_frame((1, True, "", "")), "malformed"),
]


@pytest.mark.parametrize(
    ("make", "data", "words"), [row[1:] for row in BROKEN], ids=[row[0] for row in BROKEN]
)
def test_every_reader_refuses_a_broken_stream_whole_and_byte_by_byte(
    make: Callable[[], Codec[Any]], data: bytes, words: str
) -> None:
    for chunks in ([data], bytewise(data)):
        with pytest.raises(ProtocolError, match=words):
            collect(make(), chunks)


def test_a_truncated_checkpassword_block_is_refused_at_the_end_of_the_stream() -> None:
    for chunks in ([b"alice\0"], bytewise(b"alice\0")):
        reader = checkpassword.BlockReader()
        assert collect(reader, chunks) == []
        with pytest.raises(ProtocolError, match="truncated"):
            collect(reader, [b""])
