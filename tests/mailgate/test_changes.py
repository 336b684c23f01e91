"""The ``change`` processor: report format, halting vs soft rejections, atomic mode."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwarden.accounts.rules import validate
from mailwarden.accounts.sshkeys import parse_key_line
from mailwarden.config import MailgateConfig
from mailwarden.errors import DirectoryUnavailable
from mailwarden.mailgate.changes import (
    ChangePolicy,
    ChangeResult,
    LineStatus,
    process_change,
)
from mailwarden.model import Account, Profile

ALICE = Account(
    uid="alice",
    mail="alice@example.org",
    alternate_addresses=("a.liddell@example.org",),
    ssh_keys=("ssh-ed25519 AAAAold old@key",),
    dns_records=("old IN A 192.0.2.99",),
    profile=Profile(login_shell="/bin/bash", c="GB", irc_nick="alice"),
)
POLICY = ChangePolicy(dns_zone="users.example.org", login_shells=("/bin/bash", "/bin/zsh"))
OWNERS = {"taken": "bob", "mine": "alice"}


def owner(name: str) -> str | None:
    return OWNERS.get(name)


def run(text: str, policy: ChangePolicy = POLICY, account: Account = ALICE) -> ChangeResult:
    return process_change(text, account, policy, owner)


@pytest.fixture(scope="module")
def pubkeys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    d = tmp_path_factory.mktemp("changekeys")
    out: dict[str, str] = {}
    for name, args in {
        "ed": ["-t", "ed25519"],
        "ec": ["-t", "ecdsa"],
        "rsa": ["-t", "rsa", "-b", "2048"],
        "weak": ["-t", "rsa", "-b", "1024"],
    }.items():
        path = d / name
        subprocess.run(
            ["ssh-keygen", "-q", *args, "-N", "", "-C", f"{name}@host", "-f", str(path)],
            capture_output=True,
            timeout=60,
            check=True,
        )
        out[name] = Path(f"{path}.pub").read_text().strip()
    return out


def test_each_command_gets_its_echo_and_action_line(pubkeys: dict[str, str]) -> None:
    ed = parse_key_line(pubkeys["ed"])
    ec = parse_key_line(pubkeys["ec"])
    result = run(
        "ircnick: alice_w\n"
        "Lat: 52:30.5 N Long: 13:24.3 E\n"
        "home in a 192.0.2.1\n"
        "home in aaaa 2001:db8::1\n"
        f"{pubkeys['ed']}\n"
        f"{pubkeys['ec']}\n"
        "del c\n"
        "show\n"
    )
    assert result.report == (
        "> ircnick: alice_w",
        "Changed entry ircNick to alice_w",
        "> Lat: 52:30.5 N Long: 13:24.3 E",
        "Position set to +5230.5/+1324.3 (+52.51/+13.41 decimal degrees)",
        "> home in a 192.0.2.1",
        "DNS Entry replaced with home IN A 192.0.2.1",
        "> home in aaaa 2001:db8::1",
        "DNS Entry added home IN AAAA 2001:db8::1",
        f"> {pubkeys['ed']}",
        f"SSH Keys replaced with: 256 {ed.fingerprint} [{ed.short_form()}]",
        f"> {pubkeys['ec']}",
        f"SSH Key added: 256 {ec.fingerprint} [{ec.short_form()}]",
        "> del c",
        "Removed entry c",
        "> show",
        "OK",
    )
    assert result.report_text().endswith("> show\nOK\n")
    assert result.show
    assert not result.halted
    assert result.committed
    new = result.account
    assert new.profile.irc_nick == "alice_w"
    assert (new.profile.latitude, new.profile.longitude) == ("+5230.5", "+1324.3")
    assert new.profile.c is None
    assert new.profile.login_shell == "/bin/bash"
    assert new.dns_records == ("home IN A 192.0.2.1", "home IN AAAA 2001:db8::1")
    assert new.ssh_keys == (pubkeys["ed"], pubkeys["ec"])
    validate(new)


def test_an_error_in_the_middle_keeps_exactly_the_lines_before_it() -> None:
    result = run("ircnick: first\nl: Berlin\nnonsense here\ntelephonenumber: +49 30 1234\nc: DE\n")
    assert result.halted
    assert result.committed
    assert result.applied == ("ircnick: first", "l: Berlin")
    assert result.account.profile.irc_nick == "first"
    assert result.account.profile.l == "Berlin"
    assert result.account.profile.telephone_number is None
    assert result.account.profile.c == "GB"
    assert result.report[4:] == (
        "> nonsense here",
        "Command is not understood. Halted - the changes above this line were applied",
        "> telephonenumber: +49 30 1234",
        "Not processed",
        "> c: DE",
        "Not processed",
    )
    assert [r.status for r in result.lines] == [
        LineStatus.CHANGED,
        LineStatus.CHANGED,
        LineStatus.HALTED,
        LineStatus.NOT_PROCESSED,
        LineStatus.NOT_PROCESSED,
    ]


def test_atomic_mode_applies_nothing_when_a_line_halts() -> None:
    policy = ChangePolicy(dns_zone="z", login_shells=("/bin/bash",), atomic=True)
    result = run("ircnick: first\nc: Germany\nl: Berlin\n", policy)
    assert result.halted
    assert not result.committed
    assert result.applied == ()
    assert result.account == ALICE
    assert not result.changed
    assert result.report[2:] == (
        "> c: Germany",
        "==> c: a two-letter ISO 3166 country code, e.g. DE",
        "Halted - no changes committed",
        "> l: Berlin",
        "Not processed",
    )


def test_atomic_mode_applies_everything_when_nothing_halts() -> None:
    policy = ChangePolicy(atomic=True)
    result = run("ircnick: first\ndel ircnick\nl: Berlin\n", policy)
    assert result.committed
    assert result.account.profile.irc_nick is None
    assert result.account.profile.l == "Berlin"


def test_a_malformed_value_halts_with_the_reason() -> None:
    result = run("ircnick: ok\nLat: 95 Long: 13\nl: never")
    assert result.report[2:5] == (
        "> Lat: 95 Long: 13",
        "==> latitude '95' is beyond 90 degrees",
        "Halted - the changes above this line were applied",
    )
    assert result.account.profile.latitude is None


def test_soft_rejections_report_and_go_on(pubkeys: dict[str, str]) -> None:
    result = run(
        "taken in a 192.0.2.1\n"
        "mine in cname elsewhere.example.\n"
        "mine in a 192.0.2.2\n"
        f"{pubkeys['weak']}\n"
        "del loginshell\n"
        "del favouritecolour\n"
        "ircnick: still_processed\n"
    )
    assert not result.halted
    assert result.report == (
        "> taken in a 192.0.2.1",
        "DNS entry taken is already owned by another account",
        "> mine in cname elsewhere.example.",
        "DNS Entry replaced with mine IN CNAME elsewhere.example.",
        "> mine in a 192.0.2.2",
        "CNAME and other RR types not allowed: mine in a 192.0.2.2",
        f"> {pubkeys['weak']}",
        "SSH key fails formal criteria, not added. RSA keys need >= 2048 bits, this one has 1024.",
        "> del loginshell",
        "Cannot erase entry loginshell",
        "> del favouritecolour",
        "Cannot erase entry favouritecolour",
        "> ircnick: still_processed",
        "Changed entry ircNick to still_processed",
    )
    assert result.account.dns_records == ("mine IN CNAME elsewhere.example.",)
    assert result.account.ssh_keys == ALICE.ssh_keys  # the weak key replaced nothing
    assert result.account.profile.login_shell == "/bin/bash"
    assert [r.status for r in result.lines].count(LineStatus.REFUSED) == 5


def test_a_cname_after_another_type_for_the_same_name_is_refused() -> None:
    result = run("www in a 192.0.2.1\nwww in cname x.example.\nwww in cname y.example.\n")
    assert result.report[3] == "CNAME and other RR types not allowed: www in cname x.example."
    assert result.account.dns_records == ("www IN A 192.0.2.1",)


def test_the_first_key_replaces_later_keys_add_and_the_maximum_holds(
    pubkeys: dict[str, str],
) -> None:
    policy = ChangePolicy(max_ssh_keys=2)
    result = run(f"{pubkeys['ed']}\n{pubkeys['ed']}\n{pubkeys['rsa']}\n{pubkeys['ec']}\n", policy)
    assert result.account.ssh_keys == (pubkeys["ed"], pubkeys["rsa"])
    assert "already in this message" in result.report[3]
    assert result.report[7] == "SSH key not added: at most 2 keys per account"


def test_a_blocklisted_key_is_refused(pubkeys: dict[str, str]) -> None:
    fp = parse_key_line(pubkeys["ed"]).fingerprint
    result = run(pubkeys["ed"], ChangePolicy(ssh_key_blocklist=frozenset({fp})))
    assert "compromised" in result.report[1]
    assert result.account.ssh_keys == ALICE.ssh_keys


def test_an_unparsable_key_halts(pubkeys: dict[str, str]) -> None:
    kind, b64, comment = pubkeys["ed"].split()
    result = run(f"ircnick: x\n{kind} {b64[:-6]} {comment}\nl: never\n")
    assert result.halted
    assert result.lines[1].status is LineStatus.HALTED
    assert result.account.ssh_keys == ALICE.ssh_keys
    assert result.account.profile.irc_nick == "x"


def test_options_on_a_key_line_are_kept(pubkeys: dict[str, str]) -> None:
    line = f'from="192.0.2.0/24",no-pty {pubkeys["ed"]}'
    result = run(line)
    assert result.account.ssh_keys == (line,)


def test_del_of_keys_and_dns_clears_them_and_later_lines_add() -> None:
    result = run("del sshRSAAuthKey\ndel dnsZoneEntry\nmine in a 192.0.2.5\n")
    assert result.account.ssh_keys == ()
    assert result.account.dns_records == ("mine IN A 192.0.2.5",)
    assert result.report[1] == "Removed entry sshRSAAuthKey"
    assert result.report[5] == "DNS Entry added mine IN A 192.0.2.5"


def test_a_signature_separator_ends_the_commands() -> None:
    result = run("ircnick: sig\n-- \nAlice, who writes nonsense here\n")
    assert not result.halted
    assert [r.line for r in result.lines] == ["ircnick: sig"]
    result = run("ircnick: sig\n--\nnonsense\n")  # trailing space stripped by a mailer
    assert not result.halted


def test_field_names_match_case_insensitively_and_the_seed_spellings_work() -> None:
    for name in ("labledurl", "labeledurl", "labeledURI", "LabeledUri", "labeled_uri"):
        result = run(f"{name}: https://example.org/~alice Alice's page")
        assert (
            result.report[1]
            == "Changed entry labeledURI to https://example.org/~alice Alice's page"
        )
    result = run("IRCNICK: upper\nFacsimileTelephoneNumber: +49 30 99\npostalcode: 10115\n")
    assert result.account.profile.irc_nick == "upper"
    assert result.account.profile.facsimile_telephone_number == "+49 30 99"
    assert result.account.profile.postal_code == "10115"


def test_a_field_without_value_never_clears_it() -> None:
    result = run("ircnick:\n")
    assert result.halted
    assert "del ircnick" in result.report[1]
    assert result.account.profile.irc_nick == "alice"


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("loginshell: /bin/evil", "loginShell: one of /bin/bash, /bin/zsh"),
        ("emailforward: alice@example.org", "loop"),
        ("emailforward: A.Liddell@example.org", "loop"),
        ("emailforward: not an address", "plain address"),
        ("c: Germany", "two-letter"),
        ("telephonenumber: call me", "telephone"),
        ("labeledurl: javascript:alert(1)", "http"),
        ("ircnick: has space", "IRC nickname"),
        ("l: " + "x" * 200, "at most 128"),
        ("onvacation: away\x07", "control characters"),
    ],
)
def test_each_field_has_its_own_check(line: str, complaint: str) -> None:
    result = run(line)
    assert result.halted
    assert complaint in result.report[1]


def test_invisible_direction_and_line_separators_are_refused() -> None:
    for char in ("\u202e", "\u2028", "\x85"):
        result = run(f"l: Ber{char}lin")
        assert result.halted
        assert "control characters" in result.report[1]


def test_crlf_line_ends_of_a_signed_text_are_handled() -> None:
    result = run("ircnick: crlf\r\nl: Berlin\r\n-- \r\nsig\r\n")
    assert not result.halted
    assert result.applied == ("ircnick: crlf", "l: Berlin")


def test_good_values_for_each_field_are_accepted() -> None:
    result = run(
        "c: de\n"
        "l: Berlin\n"
        "telephonenumber: +49 (30) 1234-56\n"
        "postaladdress: Street 1$10115 Berlin\n"
        "loginshell: /bin/zsh\n"
        "emailforward: alice@elsewhere.example\n"
        "onvacation: Back on Monday\n"
    )
    assert not result.halted
    p = result.account.profile
    assert (p.c, p.login_shell, p.email_forward) == ("DE", "/bin/zsh", "alice@elsewhere.example")
    assert p.postal_address == "Street 1$10115 Berlin"


def test_a_field_the_site_did_not_allow_halts() -> None:
    result = run("ircnick: x\n", ChangePolicy(fields=("c", "l")))
    assert result.halted
    assert "cannot be changed through this gateway" in result.report[1]


def test_dns_lines_halt_when_no_zone_is_configured() -> None:
    result = run("foo in a 192.0.2.1\n", ChangePolicy())
    assert result.halted
    assert "no zone" in result.report[1]


def test_show_only_changes_nothing() -> None:
    result = run("show\n")
    assert result.show
    assert not result.changed
    assert result.account == ALICE


def test_an_empty_message_says_so() -> None:
    result = run("\n  \n")
    assert result.report == ("No commands found in the message.",)
    assert not result.changed


def test_too_many_lines_halt() -> None:
    result = run("ircnick: a\n" * 5, ChangePolicy(max_lines=3))
    assert result.halted
    assert result.report[7] == "==> at most 3 commands per message"


def test_a_directory_failure_in_dns_owner_propagates() -> None:
    def down(name: str) -> str | None:
        raise DirectoryUnavailable("ldap down")

    with pytest.raises(DirectoryUnavailable):
        process_change("foo in a 192.0.2.1", ALICE, POLICY, down)


def test_the_policy_follows_the_config_section() -> None:
    cfg = MailgateConfig(
        dns_zone="u.example.", max_ssh_keys=3, atomic=True, ssh_key_blocklist=("SHA256:x",)
    )
    policy = ChangePolicy.from_config(cfg)
    assert policy.dns_zone == "u.example."
    assert policy.max_ssh_keys == 3
    assert policy.atomic
    assert policy.ssh_key_blocklist == frozenset({"SHA256:x"})
    assert policy.login_shells == cfg.login_shells
    assert set(policy.fields) == set(cfg.fields)


_COMMANDS = st.sampled_from(
    [
        "ircnick: bob",
        "c: DE",
        "del l",
        "del loginshell",
        "show",
        "Lat: 52.5 Long: 13.4",
        "foo in a 192.0.2.1",
        "taken in a 192.0.2.2",
        "foo in cname x.example.",
        "nonsense",
        "-- ",
    ]
)
_LINES = st.one_of(_COMMANDS, st.text(max_size=60))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINES, max_size=12), st.booleans())
def test_any_text_gives_a_valid_account_and_a_report(lines: list[str], atomic: bool) -> None:
    policy = ChangePolicy(dns_zone="z.example.", atomic=atomic)
    result = process_change("\n".join(lines), ALICE, policy, owner)
    validate(result.account)
    assert result.account.uid == ALICE.uid
    assert result.account.password == ALICE.password
    assert result.changed == (result.account != ALICE)
    if result.halted and atomic:
        assert result.account == ALICE
    echoed = [line for line in result.report if line.startswith("> ")]
    assert len(echoed) == len(result.lines)


def _only(owner_map: dict[str, str]) -> Callable[[str], str | None]:
    return owner_map.get


def test_dns_names_may_be_written_with_the_zone() -> None:
    result = run("home.users.example.org. in a 192.0.2.8\nwork.Users.Example.Org in a 192.0.2.9")
    assert result.account.dns_records == ("home IN A 192.0.2.8", "work IN A 192.0.2.9")
    result = run("home.other.example. in a 192.0.2.8")
    assert result.halted
    assert "single label" in result.report[1]


def test_del_position_clears_both_coordinates() -> None:
    result = run("Lat: 1 Long: 2\ndel position\n")
    assert (result.account.profile.latitude, result.account.profile.longitude) == (None, None)


def test_own_dns_names_stay_usable() -> None:
    result = process_change("mine in a 192.0.2.7", ALICE, POLICY, _only({"mine": "alice"}))
    assert result.account.dns_records == ("mine IN A 192.0.2.7",)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(data=st.data())
def test_any_mix_with_key_lines_gives_a_valid_account(
    pubkeys: dict[str, str], data: st.DataObject
) -> None:
    keyish = st.tuples(
        st.sampled_from(["", "no-pty ", 'from="x y" ']), st.sampled_from(list(pubkeys.values()))
    ).map("".join)
    lines = data.draw(st.lists(st.one_of(keyish, _COMMANDS, st.text(max_size=30)), max_size=10))
    result = process_change("\n".join(lines), ALICE, ChangePolicy(max_ssh_keys=2), owner)
    validate(result.account)
    assert len(result.account.ssh_keys) <= max(2, len(ALICE.ssh_keys))


@pytest.mark.parametrize("name", ["_acme-challenge", "_dmarc", "_domainkey", "_Acme-Challenge"])
def test_zone_wide_underscore_names_are_refused_by_default(name: str) -> None:
    result = run(f'{name} in txt "token"\nircnick: goes-on\n')
    assert result.account.dns_records == ALICE.dns_records
    assert result.lines[0].status is LineStatus.REFUSED
    assert "act for the whole zone" in result.lines[0].messages[0]
    assert result.account.profile.irc_nick == "goes-on"  # a soft refusal
    # Written in full, with the zone, it is the same name.
    full = run(f'{name}.users.example.org. in txt "token"\n')
    assert full.lines[0].status is LineStatus.REFUSED


def test_the_site_may_allow_some_underscore_names() -> None:
    cfg = MailgateConfig(dns_zone="users.example.org", dns_underscore_names=("_Acme-Challenge",))
    policy = ChangePolicy.from_config(cfg)
    result = run('_acme-challenge in txt "token"\n_dmarc in txt "v=DMARC1"\n', policy)
    assert result.account.dns_records == ('_acme-challenge IN TXT "token"',)
    assert result.lines[1].status is LineStatus.REFUSED
    # An underscore inside a name is an ordinary host name.
    assert run("my_host in a 192.0.2.5").account.dns_records == ("my_host IN A 192.0.2.5",)


def test_the_allow_list_takes_only_underscore_labels() -> None:
    from mailwarden.config import loads
    from mailwarden.errors import ConfigError

    assert loads('[mailgate]\ndns_underscore_names = ["_acme-challenge"]\n').mailgate
    for bad in ("www", "_acme-challenge.example.org", " _dmarc"):
        with pytest.raises(ConfigError, match=r"mailgate\.dns_underscore_names\[0\]"):
            loads(f'[mailgate]\ndns_underscore_names = ["{bad}"]\n')
