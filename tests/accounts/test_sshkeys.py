"""authorized_keys lines: keys made by the real ssh-keygen, fingerprints as it prints them."""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.accounts.sshkeys import (
    SshKey,
    fingerprint_of,
    key_refusal,
    key_set,
    looks_like_key_line,
    parse_key_line,
)
from mailwarden.errors import FieldError

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

KINDS = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa2048": ["-t", "rsa", "-b", "2048"],
    "rsa1024": ["-t", "rsa", "-b", "1024"],
    "dsa": ["-t", "dsa"],
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Public key files made by ssh-keygen (DSA only if this ssh-keygen still can)."""
    d = tmp_path_factory.mktemp("sshkeys")
    made: dict[str, Path] = {}
    for name, args in KINDS.items():
        path = d / name
        proc = subprocess.run(
            ["ssh-keygen", "-q", *args, "-N", "", "-C", f"{name}@test", "-f", str(path)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode == 0:
            made[name] = path.with_suffix(".pub")
    return made


def keygen_listing(path: Path) -> tuple[int, str, str]:
    """(bits, fingerprint, label) as ``ssh-keygen -lf`` prints them."""
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    return int(out[0]), out[1], out[-1].strip("()")


@pytest.mark.parametrize("name", list(KINDS))
def test_bits_fingerprint_and_type_match_ssh_keygen(keys: dict[str, Path], name: str) -> None:
    if name not in keys:
        pytest.skip(f"this ssh-keygen cannot make {name} keys")
    key = parse_key_line(keys[name].read_text())
    assert (key.bits, key.fingerprint, key.label) == keygen_listing(keys[name])
    assert key.comment == f"{name}@test"
    assert key.line() == keys[name].read_text().strip()


@pytest.mark.parametrize("name", ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"])
def test_modern_keys_are_accepted(keys: dict[str, Path], name: str) -> None:
    assert key_refusal(parse_key_line(keys[name].read_text())) is None


def test_short_rsa_is_refused_softly_with_its_size(keys: dict[str, Path]) -> None:
    refusal = key_refusal(parse_key_line(keys["rsa1024"].read_text()))
    assert refusal is not None
    assert "2048" in refusal
    assert "1024" in refusal


def test_dsa_is_refused_softly(keys: dict[str, Path]) -> None:
    if "dsa" not in keys:
        pytest.skip("this ssh-keygen cannot make DSA keys")
    refusal = key_refusal(parse_key_line(keys["dsa"].read_text()))
    assert refusal is not None
    assert "DSA" in refusal


def test_a_blocklisted_fingerprint_is_refused(keys: dict[str, Path]) -> None:
    key = parse_key_line(keys["ed25519"].read_text())
    assert key_refusal(key, blocklist=["SHA256:somethingelse"]) is None
    refusal = key_refusal(key, blocklist=[key.fingerprint])
    assert refusal is not None
    assert "compromised" in refusal


def test_options_are_kept_and_ssh_keygen_agrees_on_the_fingerprint(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    pub = keys["ed25519"].read_text().strip()
    options = 'no-pty,from="10.0.0.0/8,192.0.2.1",command="echo \\"a b\\"",restrict'
    key = parse_key_line(f"  {options} {pub}  ")
    assert key.options == options
    assert key.line() == f"{options} {pub}"
    assert key.short_form().startswith(f"{options} ssh-ed25519 ")
    # ssh-keygen -lf reads authorized_keys files with options too.
    path = tmp_path / "authorized_keys"
    path.write_text(key.line() + "\n")
    assert keygen_listing(path)[1] == key.fingerprint


def test_describe_is_bits_fingerprint_and_short_form(keys: dict[str, Path]) -> None:
    key = parse_key_line(keys["rsa2048"].read_text())
    b64 = key.base64
    assert key.describe() == (
        f"2048 {key.fingerprint} [ssh-rsa {b64[:8]}..{b64[-8:]} rsa2048@test]"
    )


def test_a_tab_separated_line_is_stored_without_tabs(keys: dict[str, Path]) -> None:
    kind, b64, _ = keys["ed25519"].read_text().split()
    key = parse_key_line(f"{kind}\t{b64}\tmy\tlaptop")
    assert key.line() == f"{kind} {b64} my laptop"
    with pytest.raises(FieldError, match="TAB"):
        parse_key_line(f'command="a\tb" {kind} {b64}')


def test_a_key_without_comment_parses(keys: dict[str, Path]) -> None:
    kind, b64 = keys["ed25519"].read_text().split()[:2]
    key = parse_key_line(f"{kind} {b64}")
    assert key.comment == ""
    assert key.line() == f"{kind} {b64}"


@pytest.mark.parametrize("name", ["ed25519", "ecdsa256", "rsa2048"])
def test_truncated_keys_are_refused(keys: dict[str, Path], name: str) -> None:
    kind, b64, comment = keys[name].read_text().split()
    for cut in (4, 8, len(b64) // 2):
        short = b64[:-cut]
        with pytest.raises(FieldError):
            parse_key_line(f"{kind} {short} {comment}")


def test_garbled_keys_are_refused(keys: dict[str, Path]) -> None:
    kind, b64, _ = keys["ed25519"].read_text().split()
    rsa_b64 = keys["rsa2048"].read_text().split()[1]
    bad_lines = [
        f"{kind} {b64[:20]}!{b64[21:]}",  # not base64
        f"ssh-rsa {b64}",  # the blob says ed25519
        f"{kind} {rsa_b64}",  # the blob says rsa
        f"{kind}",  # no key at all
        f"{kind} AAAA",  # empty type string
        f"bogus-option {kind} {b64}",  # unknown option
        f'command="unterminated {kind} {b64}',
        f'no-pty="x" {kind} {b64}',  # flag with a value
        f"command {kind} {b64}",  # option without its value
        f"{kind} {b64}\x00 x",
    ]
    # A valid blob with trailing bytes appended.
    raw = base64.b64decode(b64) + b"\x00"
    bad_lines.append(f"{kind} {base64.b64encode(raw).decode()}")
    for line in bad_lines:
        with pytest.raises(FieldError):
            parse_key_line(line)


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def test_fido_sk_keys_are_accepted() -> None:
    # No security key here to make one, so build the public blobs by their spec
    # (OpenSSH PROTOCOL.u2f): type, key data, application.
    ed = _string(b"sk-ssh-ed25519@openssh.com") + _string(bytes(range(32))) + _string(b"ssh:")
    point = b"\x04" + bytes(64)
    ec = (
        _string(b"sk-ecdsa-sha2-nistp256@openssh.com")
        + _string(b"nistp256")
        + _string(point)
        + _string(b"ssh:")
    )
    for blob, label in ((ed, "ED25519-SK"), (ec, "ECDSA-SK")):
        kind = blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode()
        key = parse_key_line(f"{kind} {base64.b64encode(blob).decode()} yubikey")
        assert (key.bits, key.label) == (256, label)
        assert key.fingerprint == fingerprint_of(blob)
        assert key_refusal(key) is None


def test_an_ecdsa_blob_with_the_wrong_curve_is_refused() -> None:
    blob = _string(b"ecdsa-sha2-nistp384") + _string(b"nistp256") + _string(b"\x04" + bytes(64))
    with pytest.raises(FieldError, match="curve"):
        parse_key_line(f"ecdsa-sha2-nistp384 {base64.b64encode(blob).decode()}")


def test_certificates_and_rsa1_are_not_key_lines(keys: dict[str, Path]) -> None:
    b64 = keys["ed25519"].read_text().split()[1]
    assert not looks_like_key_line(f"ssh-ed25519-cert-v01@openssh.com {b64}")
    assert not looks_like_key_line("1024 35 1234567890 old@rsa1")
    assert not looks_like_key_line("ircnick: ssh-ed25519")
    assert looks_like_key_line(f'from="a b" ssh-ed25519 {b64}')
    assert looks_like_key_line(f"ssh-ed25519 {b64}")


def test_an_overlong_line_is_refused() -> None:
    with pytest.raises(FieldError, match="longer"):
        parse_key_line("ssh-ed25519 " + "A" * 9000)


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_mailgate_error(text: str) -> None:
    try:
        key = parse_key_line(text)
    except FieldError:
        return
    assert isinstance(key, SshKey)


@given(st.binary(max_size=300), st.sampled_from(["ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256"]))
def test_any_blob_parses_or_raises_mailgate_error(blob: bytes, kind: str) -> None:
    for data in (blob, _string(kind.encode()) + blob):
        with contextlib.suppress(FieldError):
            parse_key_line(f"{kind} {base64.b64encode(data).decode()}")


def test_a_key_set_is_all_or_nothing(keys: dict[str, Path]) -> None:
    good = keys["ed25519"].read_text().strip()
    other = keys["ecdsa256"].read_text().strip()
    assert key_set(["", "# mine", good, good, other], max_keys=2) == (
        parse_key_line(good).line(),
        parse_key_line(other).line(),
    )
    assert key_set([], max_keys=2) == ()
    with pytest.raises(FieldError, match="At most 1 keys"):
        key_set([good, other], max_keys=1)
    with pytest.raises(FieldError, match="base64"):
        key_set([good, "ssh-ed25519 AAAA!! x"], max_keys=5)
    with pytest.raises(FieldError, match="compromised"):
        key_set([good], blocklist=[parse_key_line(good).fingerprint], max_keys=5)
    with pytest.raises(FieldError, match="2048"):
        key_set([keys["rsa1024"].read_text()], max_keys=5)
