"""passwd-file lines to accounts and back: each field kind, each error, and round trips."""

from __future__ import annotations

import io
import re
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mailwarden.accounts.passwdfile import (
    MAX_LINE_LENGTH,
    PasswdFileError,
    bounded_lines,
    format_account,
    format_accounts,
    parse_line,
    quota_limits,
    read_accounts,
)
from mailwarden.accounts.rules import check_account
from mailwarden.errors import ImportError_, InvalidAccount
from mailwarden.model import PROFILE_FIELDS, Account, AccountStatus, Profile


def parse(line: str) -> Account:
    account = parse_line(line, 1)
    assert account is not None
    return account


# --------------------------------------------------------------------------- columns


@pytest.mark.parametrize("line", ["", "\n", "   \t ", "# comment", "#alice:x", "\r\n"])
def test_blank_and_comment_lines_are_no_account(line: str) -> None:
    assert parse_line(line, 3) is None


def test_a_user_name_alone_is_an_account_without_password() -> None:
    assert parse("bob") == Account(uid="bob")
    assert parse("bob:") == Account(uid="bob")


def test_every_column_maps_to_its_account_field() -> None:
    line = "alice:{SHA512-CRYPT}$6$salt$hash:1000:100:Alice Liddell, Room 5:/home/alice:/bin/zsh"
    assert parse(line) == Account(
        uid="alice",
        password="{SHA512-CRYPT}$6$salt$hash",
        uid_number=1000,
        gid_number=100,
        home="/home/alice",
        profile=Profile(name="Alice Liddell, Room 5", login_shell="/bin/zsh"),
    )


def test_empty_columns_are_unset_fields() -> None:
    assert parse("alice:pw:::::") == Account(uid="alice", password="pw")
    assert parse("alice::::::/bin/sh") == Account(
        uid="alice", profile=Profile(login_shell="/bin/sh")
    )


def test_a_user_name_with_an_at_sign_is_also_the_mail_address() -> None:
    account = parse("Alice@Example.org:x")
    assert (account.uid, account.mail) == ("Alice@Example.org", "Alice@Example.org")


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_line_endings_are_not_part_of_the_last_field(ending: str) -> None:
    assert parse(f"alice:x::::::nologin{ending}").passdb_fields == {"nologin": ""}
    assert parse(f"alice:secret{ending}").password == "secret"


def test_a_password_keeps_its_spaces_and_scheme_prefix() -> None:
    assert parse("alice:{PLAIN}correct horse battery").password == "{PLAIN}correct horse battery"


# --------------------------------------------------------------------------- extra fields


def test_extra_fields_may_contain_colons_and_are_split_on_spaces() -> None:
    account = parse("alice:x:::::: userdb_mail=maildir:~/Maildir:LAYOUT=fs  reason=a:b ")
    assert account.mail_location == "maildir:~/Maildir:LAYOUT=fs"
    assert account.passdb_fields == {"reason": "a:b"}


def test_a_bare_flag_and_an_empty_value_are_both_the_empty_string() -> None:
    account = parse("alice:x::::::nologin nodelay= proxy host=10.0.0.2")
    assert account.passdb_fields == {"nologin": "", "nodelay": "", "proxy": "", "host": "10.0.0.2"}


def test_userdb_fields_override_the_columns() -> None:
    account = parse(
        "alice:x:1000:1000::/home/old::userdb_home=/srv/mail/alice userdb_uid=5000 userdb_gid=6000"
    )
    assert (account.home, account.uid_number, account.gid_number) == ("/srv/mail/alice", 5000, 6000)
    assert account.userdb_fields == {}


def test_other_userdb_fields_are_kept_without_their_prefix() -> None:
    account = parse("alice:x::::::userdb_nice=10 userdb_noreplicate userdb_namespace/inbox/x=y")
    assert account.userdb_fields == {"nice": "10", "noreplicate": "", "namespace/inbox/x": "y"}


@pytest.mark.parametrize(
    ("rule", "limits"),
    [
        ("*:storage=1G", {"quota_bytes": 1024**3}),
        ("*:storage=1GB", {"quota_bytes": 1024**3}),
        ("*:storage=10m", {"quota_bytes": 10 * 1024**2}),
        ("*:storage=2T", {"quota_bytes": 2 * 1024**4}),
        ("*:storage=512K", {"quota_bytes": 512 * 1024}),
        ("*:storage=1024", {"quota_bytes": 1024 * 1024}),  # no suffix: kilobytes
        ("*:storage=100B", {"quota_bytes": 100}),
        ("*:bytes=100000", {"quota_bytes": 100_000}),  # no suffix: bytes
        ("*:bytes=1M", {"quota_bytes": 1024**2}),
        ("*:storage=0", {"quota_bytes": 0}),
        ("*:messages=1000", {"quota_messages": 1000}),
        ("*:storage=1G:messages=50", {"quota_bytes": 1024**3, "quota_messages": 50}),
    ],
)
def test_default_quota_rules_become_the_quota_fields(rule: str, limits: dict[str, int]) -> None:
    assert quota_limits(rule) == limits
    account = parse(f"alice:x::::::userdb_quota_rule={rule}")
    assert account.quota_bytes == limits.get("quota_bytes")
    assert account.quota_messages == limits.get("quota_messages")
    assert account.userdb_fields == {}


def test_storage_and_message_rules_may_come_in_numbered_rules() -> None:
    account = parse(
        "alice:x::::::userdb_quota_rule=*:storage=1G userdb_quota_rule2=*:messages=100"
        " userdb_quota_rule3=Trash:storage=+100M"
    )
    assert (account.quota_bytes, account.quota_messages) == (1024**3, 100)
    assert account.userdb_fields == {"quota_rule3": "Trash:storage=+100M"}


@pytest.mark.parametrize(
    "rule",
    [
        "Trash:storage=+100M",
        "*:storage=+10M",
        "*:storage=10%",
        "*:messages=1k",
        "*:ignore",
        "*:storage=1X",
        "*",
        "*:",
        "?:storage=1G",
        "*:storage=1G:storage=2G",
    ],
)
def test_other_quota_rules_stay_userdb_fields(rule: str) -> None:
    assert quota_limits(rule) is None
    account = parse(f"alice:x::::::userdb_quota_rule={rule}")
    assert account.quota_bytes is None
    assert account.quota_messages is None
    assert account.userdb_fields == {"quota_rule": rule}


def test_allow_nets_is_split_on_commas() -> None:
    account = parse("alice:x::::::allow_nets=127.0.0.1,192.0.2.0/24,local")
    assert account.allow_nets == ("127.0.0.1", "192.0.2.0/24", "local")
    assert account.passdb_fields == {}


def test_our_extension_fields_set_the_account_fields_dovecot_has_no_field_for() -> None:
    account = parse(
        "alice@example.org:x::::::mailwarden_status=disabled mailwarden_services=-pop3,-imap,+smtp"
        " mailwarden_master=yes mailwarden_mail_host=mx2.example.org"
        " mailwarden_alt=a.l@example.org,alice@example.net"
        " mailwarden_pgp_fingerprint=0123ABCD"
        " mailwarden_ssh_keys=ssh-ed25519%20AAAA%20alice%2Claptop,ssh-rsa%20BBBB"
        " mailwarden_profile_postal_address=Christ%20Church%25$Oxford mailwarden_profile_c=GB"
    )
    assert account == Account(
        uid="alice@example.org",
        mail="alice@example.org",
        password="x",
        status=AccountStatus.DISABLED,
        services={"pop3": False, "imap": False, "smtp": True},
        master=True,
        mail_host="mx2.example.org",
        alternate_addresses=("a.l@example.org", "alice@example.net"),
        pgp_fingerprint="0123ABCD",
        ssh_keys=("ssh-ed25519 AAAA alice,laptop", "ssh-rsa BBBB"),
        profile=Profile(postal_address="Christ Church%$Oxford", c="GB"),
    )


def test_mailwarden_mail_overrides_or_clears_the_address_taken_from_the_user_name() -> None:
    assert parse("alice:x::::::mailwarden_mail=alice@example.org").mail == "alice@example.org"
    assert parse("alice@example.org:x::::::mailwarden_mail=").mail is None


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (":{PLAIN}x", "empty user name"),
        ("alice smith:x", "user name 'alice smith' contains a space"),
        ("alice\x00:x", "control character"),
        ("alice:x:abc", "uid column 'abc' is not a number"),
        ("alice:x:-1", "uid column '-1' is not a number"),
        ("alice:x:1:1g", "gid column '1g' is not a number"),
        ("alice:x:12345678901234567890", "too large"),
        ("alice:x::::::=value", "has no name"),
        ("alice:x::::::userdb_=x", "'userdb_' has no name"),
        ("alice:x::::::nologin nologin", "'nologin' is given twice"),
        ("alice:x::::::userdb_uid=vmail", "userdb_uid 'vmail' is not a number"),
        ("alice:x::::::userdb_mail=", "userdb_mail needs a value"),
        ("alice:x::::::allow_nets=10.0.0.1,,local", "allow_nets has an empty entry"),
        ("alice:x::::::mailwarden_status=frozen", "unknown mailwarden_status 'frozen'"),
        ("alice:x::::::mailwarden_master=maybe", "yes or no"),
        ("alice:x::::::mailwarden_services=imap", "not +name or -name"),
        ("alice:x::::::mailwarden_services=-IMAP", "lower case"),
        ("alice:x::::::mailwarden_colour=blue", "unknown extra field 'mailwarden_colour'"),
        ("alice:x::::::mailwarden_profile_name=Alice", "'mailwarden_profile_name'"),
        ("alice:x::::::mailwarden_mail_host=%FF", "not UTF-8"),
        ("a@x.org:x::::::mailwarden_alt=A@X.org", "listed twice"),
        (
            "alice:x::::::userdb_quota_rule=*:storage=1G userdb_quota_rule2=*:bytes=5",
            "two quota rules set quota_bytes",
        ),
        ("alice:x::::::userdb_quota_rule=*:storage=9999999999999T", "out of range"),
        ("alice:x\x85more", "line break"),
        ("alice:\udcff", "not valid UTF-8"),
    ],
)
def test_a_malformed_line_raises_passwd_file_error_with_its_line_number(
    line: str, message: str
) -> None:
    with pytest.raises(PasswdFileError, match=f"^line 42: .*{re.escape(message)}") as caught:
        parse_line(line, 42)
    assert caught.value.lineno == 42
    assert isinstance(caught.value, ImportError_)


def test_a_line_longer_than_the_limit_is_an_error_not_a_crash() -> None:
    line = "alice:x::::::reason=" + "x" * MAX_LINE_LENGTH
    with pytest.raises(PasswdFileError, match="line 9: line is longer than 65536"):
        parse_line(line, 9)
    assert parse_line("a:" + "x" * (MAX_LINE_LENGTH - 2) + "\n", 9) is not None


def test_bounded_lines_cuts_a_huge_line_and_keeps_the_line_numbers() -> None:
    stream = io.StringIO("alice:x\nbob:" + "y" * (10 * MAX_LINE_LENGTH) + "\ncarol:z\n")
    lines = list(bounded_lines(stream))
    assert len(lines) == 3
    assert max(len(line) for line in lines) == MAX_LINE_LENGTH + 1
    results = list(read_accounts(lines))
    assert [lineno for lineno, _ in results] == [1, 2, 3]
    assert isinstance(results[1][1], PasswdFileError)
    assert results[2][1] == Account(uid="carol", password="z")


# --------------------------------------------------------------------------- read_accounts

SAMPLE = """\ufeff# Dovecot passwd-file, exported 2024-05-01
# user:password:uid:gid:gecos:home:shell:extra

alice@example.org:{SHA512-CRYPT}$6$abc$def:5000:5000:Alice:/var/vmail/alice::userdb_quota_rule=*:storage=2G
bob@example.org:{BLF-CRYPT}$2y$05$xyz:5000:5000::/var/vmail/bob::nologin reason=Suspended
broken line without a colon but with spaces
carol@example.org:{PLAIN}pw:5000:notanumber
  # an indented comment is a user name with spaces, so it is reported

ALICE@example.org:{PLAIN}second:5000:5000
dave@example.org:x::::::mailwarden_alt=bob@EXAMPLE.org
erin@example.org:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA:5000:5000
"""


def test_read_accounts_reports_bad_lines_with_their_numbers_and_keeps_going() -> None:
    results = list(read_accounts(io.StringIO(SAMPLE)))
    accounts = {n: r for n, r in results if isinstance(r, Account)}
    errors = {n: str(r) for n, r in results if isinstance(r, PasswdFileError)}
    assert sorted(accounts) == [4, 5, 12]
    assert accounts[4].quota_bytes == 2 * 1024**3
    assert accounts[5].passdb_fields == {"nologin": "", "reason": "Suspended"}
    assert accounts[12].password.startswith("{ARGON2ID}$argon2id$")
    assert sorted(errors) == [6, 7, 8, 10, 11]
    assert "line 6: user name 'broken line" in errors[6]
    assert "line 7: gid column 'notanumber'" in errors[7]
    assert "line 10: user 'ALICE@example.org' is already defined on line 4" in errors[10]
    assert "line 11: address 'bob@EXAMPLE.org' is already used on line 5" in errors[11]


def test_a_byte_order_mark_counts_only_on_the_first_line() -> None:
    assert list(read_accounts(["\ufeffalice:x"])) == [(1, Account(uid="alice", password="x"))]
    [_, (lineno, second)] = list(read_accounts(["bob:x", "\ufeffcarol:x"]))
    assert lineno == 2
    assert isinstance(second, PasswdFileError)


# --------------------------------------------------------------------------- writing


def test_format_writes_what_dovecot_reads() -> None:
    account = Account(
        uid="alice@example.org",
        mail="alice@example.org",
        password="{SHA512-CRYPT}$6$abc$def",
        uid_number=5000,
        gid_number=5000,
        home="/var/vmail/alice",
        mail_location="maildir:~/Maildir",
        quota_bytes=2 * 1024**3,
        quota_messages=1000,
        allow_nets=("192.0.2.0/24", "local"),
        passdb_fields={"nologin": "", "reason": "Suspended"},
        userdb_fields={"quota_rule": "Trash:storage=+100M"},
        profile=Profile(name="Alice Liddell"),
    )
    assert format_account(account) == (
        "alice@example.org:{SHA512-CRYPT}$6$abc$def:5000:5000:Alice Liddell:/var/vmail/alice:"
        ":userdb_mail=maildir:~/Maildir userdb_quota_rule2=*:storage=2G"
        " userdb_quota_rule3=*:messages=1000 userdb_quota_rule=Trash:storage=+100M"
        " allow_nets=192.0.2.0/24,local nologin reason=Suspended"
    )


def test_format_leaves_off_trailing_empty_columns() -> None:
    assert format_account(Account(uid="bob")) == "bob:"
    assert format_account(Account(uid="bob", password="x", gid_number=7)) == "bob:x::7"


def test_format_writes_sizes_in_the_largest_exact_unit() -> None:
    def rule(size: int) -> str:
        return format_account(Account(uid="a", quota_bytes=size)).split(":", 7)[7]

    assert rule(3 * 1024**4) == "userdb_quota_rule=*:storage=3T"
    assert rule(1536 * 1024) == "userdb_quota_rule=*:storage=1536K"
    assert rule(1000) == "userdb_quota_rule=*:bytes=1000"
    assert rule(0) == "userdb_quota_rule=*:bytes=0"


def test_format_accounts_ends_every_line() -> None:
    lines = list(format_accounts([Account(uid="a"), Account(uid="b", password="x")]))
    assert lines == ["a:\n", "b:x\n"]


@pytest.mark.parametrize(
    ("account", "message"),
    [
        (Account(uid="alice", password="pass:word"), "password contains ':'"),
        (Account(uid="#alice"), "starts with '#'"),
        (Account(uid="a:b"), "user name contains ':'"),
        (Account(uid="alice", home="/home/a:b"), "home contains ':'"),
        (Account(uid="alice", home=""), "home is empty"),
        (Account(uid="alice", profile=Profile(name="A:B")), "gecos"),
        (Account(uid="alice", mail_location="maildir:~/My Mail"), "contains a space"),
        (Account(uid="alice", passdb_fields={"reason": "Account suspended"}), "contains a space"),
        (Account(uid="alice", passdb_fields={"a=b": "c"}), "contains '='"),
        (Account(uid="alice", passdb_fields={"allow_nets": "x"}), "read back as something else"),
        (Account(uid="alice", passdb_fields={"userdb_home": "/x"}), "read back"),
        (Account(uid="alice", passdb_fields={"mailwarden_status": "x"}), "read back"),
        (Account(uid="alice", userdb_fields={"home": "/x"}), "is an account field"),
        (Account(uid="alice", userdb_fields={"quota_rule2": "*:storage=1G"}), "account's quota"),
        (Account(uid="alice", allow_nets=("a,b",)), "allow_nets"),
        (Account(uid="alice", password="x\ry"), "line break"),
        (Account(uid="alice", password="x" * MAX_LINE_LENGTH), "longer than"),
        (Account(uid="alice", quota_bytes=-1), "quota_bytes"),
        (Account(uid="alice", password="\udcff"), "not valid Unicode"),
        (Account(uid="al ice"), "contains a space"),
    ],
)
def test_format_refuses_what_a_passwd_file_cannot_carry(account: Account, message: str) -> None:
    with pytest.raises(InvalidAccount, match=message):
        format_account(account)


# --------------------------------------------------------------------------- round trips

_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# Printable characters without spaces: what user names and addresses are made of.
_login_chars = st.characters(
    categories=("L", "M", "N", "P", "S"), exclude_characters=":" + _LINE_BREAKS
)
_logins = st.text(_login_chars, min_size=1, max_size=12).filter(lambda s: not s.startswith("#"))
_column = st.text(
    st.characters(codec="utf-8", exclude_characters=":" + _LINE_BREAKS),
    min_size=1,
    max_size=12,
)
_any_text = st.text(st.characters(codec="utf-8"), max_size=12)
_token = st.text(st.characters(codec="utf-8", exclude_characters=" " + _LINE_BREAKS), max_size=10)
# Field names: no '=', no space, no control character (rules.field_name_storable).
_key = _token.filter(lambda k: k != "" and "=" not in k and k.isprintable())
_numbers = st.none() | st.integers(0, 2**63 - 1)
_quota = st.none() | st.integers(0, 2**63 - 1) | st.sampled_from([0, 1024, 1024**3, 5 * 1024**4])
_userdb_keys = _key.filter(lambda k: k not in {"mail", "home", "uid", "gid"}) | st.sampled_from(
    ["quota_rule", "quota_rule2", "quota_rule3"]
)


@st.composite
def representable_accounts(draw: st.DrawFn) -> Account:
    uid = draw(_logins)
    addresses = draw(st.lists(_logins, max_size=4, unique_by=str.lower))
    mail: str | None
    mail_first = draw(st.booleans())
    if addresses and mail_first:
        mail, alternates = addresses[0], tuple(addresses[1:])
    else:
        mail, alternates = (uid if "@" in uid else None), tuple(addresses)
    assume(mail is None or mail.lower() not in {a.lower() for a in alternates})
    userdb = draw(st.dictionaries(_userdb_keys, _token, max_size=3))
    assume(not any(k.startswith("quota_rule") and quota_limits(v) for k, v in userdb.items()))
    profile = {name: draw(st.none() | _any_text) for name in PROFILE_FIELDS}
    profile["name"] = draw(st.none() | _column)
    profile["login_shell"] = draw(st.none() | _column)
    return Account(
        uid=uid,
        mail=mail,
        alternate_addresses=alternates,
        password=draw(
            st.text(
                st.characters(codec="utf-8", exclude_characters=":" + _LINE_BREAKS),
                max_size=20,
            )
        ),
        status=draw(st.sampled_from(AccountStatus)),
        services=draw(
            st.dictionaries(
                st.text(string.ascii_lowercase + string.digits + "-+,% ", min_size=1, max_size=6),
                st.booleans(),
                max_size=3,
            )
        ),
        mail_host=draw(st.none() | _any_text),
        home=draw(st.none() | _column),
        mail_location=draw(st.none() | _token.filter(bool)),
        uid_number=draw(_numbers),
        gid_number=draw(_numbers),
        quota_bytes=draw(_quota),
        quota_messages=draw(_quota),
        master=draw(st.booleans()),
        allow_nets=tuple(draw(st.lists(_token.filter(lambda n: n and "," not in n), max_size=3))),
        passdb_fields=draw(
            st.dictionaries(
                _key.filter(
                    lambda k: k != "allow_nets" and not k.startswith(("userdb_", "mailwarden_"))
                ),
                _token,
                max_size=3,
            )
        ),
        userdb_fields=userdb,
        pgp_fingerprint=draw(st.none() | _any_text),
        ssh_keys=tuple(draw(st.lists(_any_text, max_size=3))),
        dns_records=tuple(draw(st.lists(_any_text, max_size=3))),
        profile=Profile(**profile),
    )


@given(representable_accounts())
def test_every_account_a_passwd_file_can_carry_round_trips(account: Account) -> None:
    line = format_account(account)
    assert parse_line(line, 1) == account
    assert parse_line(line + "\n", 1) == account


# Mostly plausible values with some impossible ones, so that both outcomes occur.
_mixed = st.one_of(_logins, _token, _any_text)


@given(
    st.builds(
        Account,
        uid=_mixed,
        mail=st.none() | _mixed,
        alternate_addresses=st.lists(_mixed, max_size=2).map(tuple),
        password=_mixed,
        home=st.none() | _mixed,
        mail_location=st.none() | _mixed,
        allow_nets=st.lists(_mixed, max_size=2).map(tuple),
        passdb_fields=st.dictionaries(_mixed, _mixed, max_size=2),
        userdb_fields=st.dictionaries(_mixed, _mixed, max_size=2),
        quota_bytes=_quota,
        profile=st.builds(Profile, name=st.none() | _mixed, login_shell=st.none() | _mixed),
    )
)
def test_any_account_either_round_trips_or_is_refused(account: Account) -> None:
    try:
        line = format_account(account)
    except InvalidAccount:
        return
    assert parse_line(line, 1) == account


_PIECES = st.sampled_from(
    [
        ":",
        " ",
        "=",
        ",",
        "%",
        "%2",
        "%FF",
        "#",
        "@",
        "alice",
        "1000",
        "userdb_",
        "mailwarden_",
        "quota_rule",
        "*:storage=1G",
        "mail",
        "alt",
        "services",
        "-imap",
        "status",
        "allow_nets",
        "\udcff",
        "\x00",
        "\n",
        "profile_c",
        "9" * 30,
    ]
)


@given(st.text() | st.lists(_PIECES, max_size=30).map("".join))
def test_any_line_parses_or_raises_passwd_file_error(line: str) -> None:
    try:
        result = parse_line(line, 5)
    except PasswdFileError as exc:
        assert exc.lineno == 5
    else:
        assert result is None or isinstance(result, Account)


_EXTRA_FIELD = st.one_of(
    st.builds(
        "{}={}".format,
        st.sampled_from(
            [
                "mailwarden_alt",
                "mailwarden_mail",
                "mailwarden_services",
                "mailwarden_ssh_keys",
                "mailwarden_dns_records",
                "mailwarden_status",
                "mailwarden_master",
                "mailwarden_profile_c",
                "userdb_quota_rule",
                "userdb_uid",
                "allow_nets",
                "reason",
            ]
        ),
        _mixed,
    ),
    _token,
)


@st.composite
def passwd_lines(draw: st.DrawFn) -> str:
    columns = draw(st.lists(_mixed.filter(lambda c: ":" not in c), min_size=1, max_size=7))
    extras = draw(st.lists(_EXTRA_FIELD, max_size=4))
    return ":".join(columns + [""] * (7 - len(columns))) + ":" + " ".join(extras)


@given(passwd_lines() | representable_accounts().map(format_account))
def test_every_parsed_account_is_one_a_directory_accepts(line: str) -> None:
    # An import never fails at the database for a line that parsed: passwdfile
    # refuses a line with the same rules the directories apply.
    try:
        account = parse_line(line, 1)
    except PasswdFileError:
        return
    if account is not None:
        check_account(account)
