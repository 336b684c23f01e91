"""docs/migrating.md's guides, run as written against the real old and new sides.

Every block of the page that follows a ``<!-- step: NAME -->`` line is a step: a
config file (written where its first line's comment says, or where the test needs
it) or a shell script (run with ``bash -e``). Before a step is used, the machine's
paths in it (``/etc/mailwarden/``, ``/run/dovecot/``, ``/etc/shadow``, ...), the
ports and endpoints of servers (mailwarden's HTTP API, the LDAP server, the old
Nauthilus) and the LDAP service password are replaced by those of a private temp
dir; a step that still names one of the machine's paths after that is an error, so
no step ever touches the machine. ``doveadm`` gets ``-c`` with a minimal config, as
in every peer test. Nothing else of the text is changed, so a wrong command, option
or key in the guide fails its test.

The old side is the real program where this machine has it: Dovecot 2.3's own auth
process with a passwd-file, with the ``sql`` driver on a site's own PostgreSQL table,
and on Postfix Admin's schema and sample accounts from docs/examples (PostgreSQL and
MariaDB, DOVECOT.txt's query forms for each), Dovecot's Lua passdb running the seed
script, and Cyrus saslauthd ``-a shadow`` reading a private passwd and shadow file
through nss_wrapper. The compare loops must print the expected verdicts, ``same``
where both sides agree and ``DIFFERENT`` for an account only mailwarden has, and
mailwarden's log must hold one decision per login. Not on this machine, so not
run as the old side: qmail-ldap's ``auth_pop`` and Nauthilus (their compare loops
run with the ``old`` column failing, and only the ``new`` column is checked). Cyrus
saslauthd ``-a pam`` runs with the guide's PAM stack in a private mount namespace
whose /etc/pam.d is a temp dir (as tests/classic/test_pam.py runs pamtester).
The running-as-policy-server section is only a link to docs/policy-server.md.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailwarden import schemes
from tests.peers.configs import dovecot_conf, listeners
from tests.peers.conftest import (
    DOVECOT,
    connectable,
    free_port,
    private_dir,
    running_dovecot,
    running_serve,
    stop_process,
    wait_until,
)
from tests.peers.test_dovecot_lua import LUA_MODULE, SEED
from tests.peers.test_dovecot_lua import dovecot_config as lua_dovecot_config
from tests.peers.test_exim import find_nss_wrapper
from tests.slapd import SERVICE_PW, SUFFIX, Slapd, base_ldif, have_slapd, slappasswd
from tests.sqlservers import PASSWORD, USER, PostgresServer, SqlServer

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "migrating.md"
EXAMPLES = ROOT / "docs" / "examples" / "postfixadmin"
STEP = re.compile(r"<!-- step: (?P<name>[\w/-]+) -->\n```\w*\n(?P<body>.*?)\n```\n", re.S)
# What the guide names of the machine; each must be replaced before a step is used.
MACHINE = (
    "/etc/mailwarden/",
    "/var/lib/mailwarden/",
    "/run/mailwarden/",
    "/etc/dovecot/",
    "/run/dovecot/",
    "/run/saslauthd/",
    "/etc/shadow",
    "/etc/passwd",
    "/root/",
    "127.0.0.1:9080",
    "ldap.example.org",
    "login.example.com",
)
VERDICT = re.compile(r"^(?P<user>\S+) old=(?P<old>\S*) new=(?P<new>\S*) (?P<same>same|DIFFERENT)$")

USERDB = re.compile(r"^(?P<user>\S+) userdb (?P<verdict>same|DIFFERENT)$")

needs_dovecot = pytest.mark.skipif(
    shutil.which("doveadm") is None or shutil.which(DOVECOT) is None,
    reason="dovecot-core (dovecot, doveadm) is not installed",
)


def steps() -> dict[str, str]:
    found: dict[str, str] = {}
    for match in STEP.finditer(GUIDE.read_text()):
        assert match["name"] not in found, f"step {match['name']} twice"
        found[match["name"]] = match["body"] + "\n"
    return found


@dataclass
class Guide:
    """The guide's steps for one private root: ``places`` maps the guide's machine
    paths and endpoints to this test's."""

    root: Path
    places: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.joinpath("min.conf").write_text("ssl = no\n")
        for sub in ("etc", "lib", "run", "dovecot", "home"):
            self.root.joinpath(sub).mkdir(exist_ok=True)
        self.places = {
            "/etc/mailwarden/": f"{self.root}/etc/",
            "/var/lib/mailwarden/": f"{self.root}/lib/",
            "/run/mailwarden/": f"{self.root}/run/",
            "/etc/dovecot/": f"{self.dovecot}/",
            "/run/dovecot/": f"{self.dovecot}/run/",
            "/root/": f"{self.root}/home/",
            **self.places,
        }

    @property
    def dovecot(self) -> Path:
        """The old Dovecot's root (dovecot_conf puts its base_dir in ``run/`` under it)."""
        return self.root / "dovecot"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "mailwarden.toml"

    def text(self, name: str) -> str:
        # One pass, longest first: a replacement is never replaced again.
        keys = sorted(self.places, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(key) for key in keys))
        source = steps()[name]
        kept = "\0".join(pattern.split(source))  # the text that was not replaced
        left = [path for path in MACHINE if path in kept]
        assert not left, f"step {name} still names {left} of the machine"
        return pattern.sub(lambda m: self.places[m[0]], source)

    def write(self, name: str, path: Path | None = None) -> Path:
        target = path or self.config
        target.write_text(self.text(name))
        return target

    def run(self, name: str) -> str:
        """Run step ``name`` with bash -e; its output (stdout and stderr). It must exit 0."""
        script = re.sub(
            r"(?m)(^|[\s(])doveadm ", rf"\1doveadm -c {self.root}/min.conf ", self.text(name)
        )
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=self.root,
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"step {name} exited {done.returncode}:\n{script}\n{output}"
        return output

    def logins(self, logins: list[tuple[str, str]]) -> None:
        self.root.joinpath("logins.txt").write_text("".join(f"{u} {p}\n" for u, p in logins))


def verdicts(output: str) -> list[tuple[str, str, str, bool]]:
    """(user, old, new, same) for each line a compare loop printed."""
    found = [VERDICT.match(line) for line in output.splitlines()]
    return [(m["user"], m["old"], m["new"], m["same"] == "same") for m in found if m]


def assert_verdicts(
    output: str,
    logins: list[tuple[str, str]],
    codes: list[str],
    *,
    new: list[str] | None = None,
    old: str | None = None,
) -> None:
    """The compare loop printed one line per login, in order, with the exit codes (or
    HTTP statuses) ``codes`` on both sides (``new``: the new side's where they differ,
    and the line must then say DIFFERENT); with ``old`` (no old side on this machine)
    the old column is that for every login and ``codes`` are the new side's."""
    users = [user for user, _ in logins]
    if old is not None:
        olds, news = [old] * len(users), codes
    else:
        olds, news = codes, new or codes
    wanted = [(user, o, n, o == n) for user, o, n in zip(users, olds, news, strict=True)]
    assert verdicts(output) == wanted, output


def assert_asked(guide: Guide, logins: list[tuple[str, str]]) -> None:
    """mailwarden decided every login of the compare loop itself (its log has one
    decision per login, in order): the new side was not the old one asked twice."""
    log = (guide.config.parent / "serve.log").read_text()
    decided = re.findall(r"auth frontend=\S+ .* user='([^']*)' .* result=", log)
    assert decided == [user for user, _ in logins], log


def userdb_lines(output: str) -> dict[str, str]:
    """user -> ``same`` or ``DIFFERENT``, from the compare loop's ``USER userdb ...`` lines."""
    found = (USERDB.match(line) for line in output.splitlines())
    return {m["user"]: m["verdict"] for m in found if m}


def old_dovecot_conf(guide: Guide, passdb_and_userdb: str) -> Path:
    """The old side: Dovecot's auth service only, with the guide's passdb and userdb."""
    conf = guide.dovecot / "dovecot.conf"
    conf.write_text(
        dovecot_conf(
            guide.dovecot,
            settings={
                "auth_mechanisms": "plain login",
                "auth_failure_delay": 0,
                "auth_cache_size": 0,
            },
            services={
                "auth": listeners({"auth-client": "0600", "auth-userdb": "0600"}, user="root")
            },
        )
        + passdb_and_userdb
    )
    return conf


def mailwarden_sockets(guide: Guide) -> tuple[str, str]:
    return str(guide.root / "run" / "auth-client"), str(guide.root / "run" / "auth-userdb")


def mailwarden(guide: Guide, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwarden", "-c", str(guide.config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def doveadm(guide: Guide, *args: str) -> int:
    done = subprocess.run(
        ["doveadm", "-c", str(guide.root / "min.conf"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode


def sha512(password: str) -> str:
    return schemes.generate(password.encode(), "SHA512-CRYPT")


# --------------------------------------------------------------------------- the page


def test_every_guide_the_issue_asks_for_is_there_and_readme_links_the_page() -> None:
    text = GUIDE.read_text()
    for heading in (
        "## Dovecot passwd-file",
        "## Dovecot SQL",
        "## Postfix Admin",
        "## qmail-ldap: `auth_pop` and `auth_imap`",
        "## Nauthilus: the HTTP API and the Lua script",
        "## Cyrus saslauthd with shadow or PAM",
        "## Running as a Dovecot auth-policy server only",
    ):
        assert f"\n{heading}\n" in text, heading
    assert "(policy-server.md#adopting-running-as-a-policy-server-only)" in text
    assert "(docs/migrating.md)" in (ROOT / "README.md").read_text()
    assert len(steps()) == text.count("<!-- step: ") - 1  # every marker is a step (one in prose)


# --------------------------------------------------------------------------- passwd-file

USERS = (
    "alice:{alice}:5000:5000::/var/mail/alice::userdb_mail=maildir:~/Maildir\n"
    "bob:{bob}:5001:5001::/var/mail/bob::\n"
    "carol:{carol}:5002:5002::/var/mail/carol::nologin reason=moved\n"
)
PASSWD_LOGINS = [
    ("alice", "alicepw"),
    ("alice", "wrong"),
    ("bob", "bobpw"),
    ("bob", "alicepw"),
    ("nobody", "x"),
]


@needs_dovecot
def test_the_passwd_file_guide_compares_switches_and_rolls_back() -> None:
    with private_dir("mig-passwd") as root:
        guide = Guide(root)
        users = guide.dovecot / "users"
        # alice with a prefix, bob bare (the scheme= of the passdb), carol's nologin.
        users.write_text(
            USERS.format(
                alice=sha512("alicepw"),
                bob=sha512("bobpw").removeprefix("{SHA512-CRYPT}"),
                carol=sha512("carolpw"),
            )
        )
        conf = old_dovecot_conf(guide, guide.text("passwd-file/old-dovecot"))
        guide.write("passwd-file/config")
        imported = guide.run("passwd-file/import")
        assert "imported: 3 created" in imported, imported
        # dora is only in mailwarden: the loop must see both sides, and say so.
        added = mailwarden(guide, "user", "add", "dora", "--password-stdin", stdin="dorapw\n")
        assert added.returncode == 0, added.stdout + added.stderr
        logins = [*PASSWD_LOGINS, ("carol", "carolpw"), ("dora", "dorapw")]
        guide.logins(logins)
        # carol: nologin still verifies the password
        expected, new = (
            ["0", "77", "0", "77", "77", "0", "77"],
            ["0", "77", "0", "77", "77", "0", "0"],
        )

        with running_serve(guide.config, ready=mailwarden_sockets(guide)):
            with running_dovecot(conf, guide.dovecot):  # the old side, stopped after the compare
                compared = guide.run("passwd-file/compare")
            assert_verdicts(compared, logins, expected, new=new)
            assert_asked(guide, logins)
            assert userdb_lines(compared) == {
                **{u: "same" for u in ("alice", "bob", "carol", "nobody")},
                "dora": "DIFFERENT",
            }, compared

            # A change made in mailwarden while it served: the rollback carries it back.
            changed = mailwarden(
                guide, "user", "passwd", "alice", "--password-stdin", stdin="newpw\n"
            )
            assert changed.returncode == 0, changed.stderr
            guide.run("passwd-file/rollback")
            assert (guide.dovecot / "users.before-mailwarden").read_text() != users.read_text()
            with running_dovecot(conf, guide.dovecot):
                client = str(guide.dovecot / "run" / "auth-client")
                assert doveadm(guide, "auth", "test", "-a", client, "alice", "newpw") == 0
                assert doveadm(guide, "auth", "test", "-a", client, "alice", "alicepw") == 77
                assert doveadm(guide, "auth", "test", "-a", client, "bob", "bobpw") == 0
                assert doveadm(guide, "auth", "test", "-a", client, "carol", "carolpw") == 0


# --------------------------------------------------------------------------- SQL


def dovecot_sql(guide: Guide) -> str:
    """The old side's passdb and userdb: the site's dovecot-sql.conf.ext."""
    args = guide.dovecot / "dovecot-sql.conf.ext"
    return "".join(
        f"{kind} {{\n  driver = sql\n  args = {args}\n}}\n" for kind in ("passdb", "userdb")
    )


def with_connect(text: str, server: SqlServer, database: str) -> str:
    """The site's dovecot-sql.conf.ext with its connect line pointing at ``server``."""
    line = (
        f"connect = host=127.0.0.1 port={server.port} dbname={database} "
        f"user={USER} password={PASSWORD}"
    )
    return re.sub(r"(?m)^connect = .*$", line, text)


def passwords_of(server: SqlServer, database: str, table: str) -> str:
    return server.run_sql(f"SELECT * FROM {table} ORDER BY 1", database)


SITE_USERS = """
CREATE TABLE users (
    username varchar(128) NOT NULL, domain varchar(128) NOT NULL,
    password varchar(255) NOT NULL, home varchar(255) NOT NULL,
    uid integer NOT NULL, gid integer NOT NULL, PRIMARY KEY (username, domain));
INSERT INTO users VALUES
  ('alice', 'example.org', '{alice}', '/var/mail/example.org/alice', 5000, 5000),
  ('bob', 'example.org', '{bob}', '/var/mail/example.org/bob', 5001, 5001);
"""


@needs_dovecot
def test_the_dovecot_sql_guide_reads_the_same_tables_with_the_same_verdicts(
    postgres_server: PostgresServer,
) -> None:
    database = postgres_server.create_database()
    postgres_server.run_sql(
        SITE_USERS.format(
            alice=sha512("alicepw"), bob=sha512("bobpw").removeprefix("{SHA512-CRYPT}")
        ),
        database,
    )
    before = passwords_of(postgres_server, database, "users")
    with private_dir("mig-sql") as root:
        guide = Guide(root)
        site = guide.dovecot / "dovecot-sql.conf.ext"
        site.write_text(with_connect(guide.text("dovecot-sql/old-conf"), postgres_server, database))
        conf = old_dovecot_conf(guide, dovecot_sql(guide))
        guide.run("dovecot-sql/config")
        logins = [
            ("alice@example.org", "alicepw"),
            ("alice@example.org", "bobpw"),
            ("bob@example.org", "bobpw"),
            ("nobody@example.org", "x"),
        ]
        guide.logins(logins)
        with (
            running_serve(guide.config, ready=mailwarden_sockets(guide)),
            running_dovecot(conf, guide.dovecot),
        ):
            compared = guide.run("dovecot-sql/compare")
        assert_verdicts(compared, logins, ["0", "77", "0", "77"])
        assert_asked(guide, logins)
        assert set(userdb_lines(compared).values()) == {"same"}, compared
    # Roll back: the tables were only read.
    assert passwords_of(postgres_server, database, "users") == before


def postfixadmin_conf(server: SqlServer, database: str) -> str:
    """The site's dovecot-sql.conf.ext as DOVECOT.txt gives it for ``server``'s engine:
    the example file (PostgreSQL's form), or its MySQL form (``CONCAT()``)."""
    text = (EXAMPLES / "dovecot-sql.conf.ext").read_text()
    if server.name == "mariadb":
        text = text.replace("driver = pgsql", "driver = mysql")
        text = re.sub(r"('[^']*') \|\| (\w+)", r"CONCAT(\1, \2)", text)
        assert not re.search(r"(?m)^[^#].*\|\|", text), text  # every query converted
    return with_connect(text, server, database)


@needs_dovecot
def test_the_postfixadmin_guide_gives_dovecots_verdicts_in_process(
    sql_server: SqlServer,
) -> None:
    database = sql_server.create_database()
    schema = "schema-pgsql.sql" if sql_server.name == "postgresql" else "schema-mysql.sql"
    sql_server.run_sql((EXAMPLES / schema).read_text(), database)
    sql_server.run_sql((EXAMPLES / "sample-data.sql").read_text(), database)
    before = passwords_of(sql_server, database, "mailbox")
    with private_dir("mig-pfa") as root:
        guide = Guide(root)
        (guide.dovecot / "dovecot-sql.conf.ext").write_text(postfixadmin_conf(sql_server, database))
        conf = old_dovecot_conf(guide, dovecot_sql(guide))
        guide.run("postfixadmin/config")
        logins = [
            ("crypt6@example.com", "test123"),
            ("crypt6@example.com", "test1234"),
            ("md5crypt@example.com", "test123"),
            ("blf@example.com", "test123"),
            ("away@example.com", "test123"),
            ("nobody@example.com", "test123"),
        ]
        guide.logins(logins)
        with running_dovecot(conf, guide.dovecot):
            compared = guide.run("postfixadmin/compare")
        assert_verdicts(compared, logins, ["0", "77", "0", "0", "77", "77"])
    assert passwords_of(sql_server, database, "mailbox") == before


# --------------------------------------------------------------------------- qmail-ldap


def qmail_entries() -> str:
    people = f"ou=people,{SUFFIX}"

    def entry(uid: str, password: str, *extra: str) -> str:
        lines = [
            f"dn: uid={uid},{people}",
            "objectClass: top",
            "objectClass: account",
            "objectClass: qmailUser",
            f"uid: {uid}",
            f"mail: {uid}@example.org",
            f"userPassword: {password}",
            f"mailMessageStore: /var/qmail/maildirs/{uid}/",
            *extra,
        ]
        return "\n".join(lines) + "\n"

    return "\n".join(
        [
            base_ldif(),
            entry("alice", slappasswd("alicepw", "{SSHA}"), "qmailUID: 5000", "qmailGID: 5000"),
            entry("bob", slappasswd("bobpw", "{CRYPT}"), "accountStatus: nopop"),
            entry("carol", slappasswd("carolpw", "{SSHA}"), "accountStatus: disabled"),
        ]
    )


def test_the_qmail_ldap_guide_reads_the_entries_auth_pop_reads() -> None:
    if not have_slapd():
        pytest.skip("slapd is not installed")
    with private_dir("mig-qmail") as root:
        slapd = Slapd(root / "slapd", data_ldif=qmail_entries())
        slapd.start()
        try:
            guide = Guide(
                root,
                places={
                    "ldap://ldap.example.org/": slapd.url,
                    "ldap-service-password": SERVICE_PW,
                },
            )
            guide.write("qmail-ldap/config")
            listed = guide.run("qmail-ldap/check")
            assert "OK" in listed and "alice" in listed and "bob" in listed, listed
            before = slapd_entries(slapd)
            logins = [
                ("alice", "alicepw"),
                ("alice", "bobpw"),
                ("bob", "bobpw"),  # nopop: qmail-ldap's POP3 switch
                ("carol", "carolpw"),
                ("nobody", "x"),
            ]
            guide.logins(logins)
            compared = guide.run("qmail-ldap/compare")
            # No auth_pop on this machine: the old column is the shell's 127.
            assert_verdicts(compared, logins, ["0", "1", "1", "1", "1"], old="127")
            assert slapd_entries(slapd) == before  # rehash = "never": nothing written
        finally:
            slapd.stop()


def slapd_entries(slapd: Slapd) -> str:
    done = subprocess.run(
        [
            "ldapsearch",
            "-x",
            "-LLL",
            "-H",
            slapd.url,
            "-D",
            f"cn=mailwarden,{SUFFIX}",
            "-w",
            SERVICE_PW,
            "-b",
            SUFFIX,
            "(uid=*)",
            "userPassword",
            "modifyTimestamp",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


# --------------------------------------------------------------------------- Nauthilus

NAUTHILUS_LOGINS = [("alice", "alicepw"), ("alice", "wrong"), ("bob", "bobpw"), ("nobody", "x")]


def import_accounts(guide: Guide) -> None:
    """The passwd-file guide's init and import, for a guide that needs accounts."""
    users = guide.root / "users"
    users.write_text(
        USERS.format(alice=sha512("alicepw"), bob=sha512("bobpw"), carol=sha512("carolpw"))
    )
    for args in (("init",), ("import", "passwd-file", str(users))):
        done = mailwarden(guide, *args)
        assert done.returncode == 0, done.stdout + done.stderr


@needs_dovecot
def test_the_nauthilus_guide_switches_the_seed_script_to_mailwarden_and_back() -> None:
    if not LUA_MODULE.exists() or shutil.which("curl") is None:
        pytest.skip("dovecot-auth-lua or curl is not installed")
    port = free_port()
    with private_dir("mig-lua") as root:
        guide = Guide(
            root,
            places={
                "127.0.0.1:9080": f"127.0.0.1:{port}",
                # no Nauthilus here: a port nothing listens on
                "https://login.example.com/": f"http://127.0.0.1:{free_port()}/",
            },
        )
        guide.write("nauthilus/config")
        secret = guide.dovecot / "http-auth.secret"
        secret.write_text(base64.b64encode(b"dovecot:lua-secret").decode())
        script = SEED.read_text().replace("@SECRET_FILE@", str(secret))
        site = script.replace("@HTTP_URI@", "https://login.example.com/api/v1/auth/json")
        lua = guide.dovecot / "nauthilus.lua"
        lua.write_text(site)
        mw_url = f"http://127.0.0.1:{port}/api/v1/auth/json"
        (guide.dovecot / "nauthilus-master.lua").write_text(
            script.replace("@HTTP_URI@", mw_url + "?mode=master")
        )
        conf = guide.dovecot / "dovecot.conf"
        conf.write_text(lua_dovecot_config(guide.dovecot))
        guide.logins(NAUTHILUS_LOGINS)
        import_accounts(guide)
        with running_serve(guide.config, ready=(("127.0.0.1", port),)):
            compared = guide.run("nauthilus/compare")
            # No Nauthilus on this machine: curl's 000 in the old column.
            assert_verdicts(compared, NAUTHILUS_LOGINS, ["200", "403", "200", "403"], old="000")
            assert_asked(guide, NAUTHILUS_LOGINS)

            guide.run("nauthilus/switch")
            assert f'local http_uri = "{mw_url}"' in lua.read_text()
            with running_dovecot(conf, guide.dovecot):
                client = str(guide.dovecot / "run" / "auth-client")
                userdb = str(guide.dovecot / "run" / "auth-userdb")
                assert doveadm(guide, "auth", "test", "-a", client, "alice", "alicepw") == 0
                assert doveadm(guide, "auth", "test", "-a", client, "alice", "wrong") == 77
                assert doveadm(guide, "user", "-a", userdb, "bob") == 0
            guide.run("nauthilus/rollback")
            assert lua.read_text() == site


# --------------------------------------------------------------------------- saslauthd

SASLAUTHD = shutil.which("saslauthd") or "/usr/sbin/saslauthd"
TESTSASLAUTHD = shutil.which("testsaslauthd") or "/usr/sbin/testsaslauthd"


@contextlib.contextmanager
def cyrus_saslauthd(root: Path, passwd: Path, shadow: Path) -> Iterator[Path]:
    """Cyrus saslauthd ``-a shadow`` over a private passwd and shadow (nss_wrapper)."""
    wrapper = find_nss_wrapper()
    if wrapper is None or not Path(SASLAUTHD).exists() or not Path(TESTSASLAUTHD).exists():
        pytest.skip("needs saslauthd, testsaslauthd (sasl2-bin) and libnss-wrapper")
    group = root / "nss-group"
    group.write_text(Path("/etc/group").read_text())
    mux = root / "saslauthd"
    mux.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "LD_PRELOAD": wrapper,
        "NSS_WRAPPER_PASSWD": str(passwd),
        "NSS_WRAPPER_GROUP": str(group),
        "NSS_WRAPPER_SHADOW": str(shadow),
    }
    with running_saslauthd([SASLAUTHD, "-d", "-a", "shadow", "-m", str(mux), "-n", "2"], mux, env):
        yield mux


@contextlib.contextmanager
def running_saslauthd(
    argv: list[str], mux: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    """Start ``argv`` (a saslauthd listening in ``mux``), wait for its socket, stop it."""
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: proc.poll() is not None or connectable(str(mux / "mux")), "saslauthd")
        assert proc.poll() is None, "saslauthd exited"
        yield
    finally:
        stop_process(proc)


def test_the_saslauthd_guide_imports_shadow_and_answers_as_cyrus_saslauthd() -> None:
    with private_dir("mig-sasl") as root:
        guide = Guide(root)
        passwd, shadow = root / "passwd", root / "shadow"
        guide.places.update({"/etc/passwd": str(passwd), "/etc/shadow": str(shadow)})
        guide.places["/run/saslauthd/"] = f"{root}/saslauthd/"
        crypt = {
            u: sha512(f"{u}pw").removeprefix("{SHA512-CRYPT}") for u in ("alice", "bob", "svc")
        }
        passwd.write_text(
            Path("/etc/passwd").read_text()
            + "alice:x:20001:20001::/home/alice:/bin/sh\n"
            + "bob:x:20002:20002::/home/bob:/bin/sh\n"
            + "locked:x:20003:20003::/home/locked:/bin/sh\n"
            + "svc:x:500:500::/nonexistent:/usr/sbin/nologin\n"
        )
        shadow.write_text(
            f"alice:{crypt['alice']}:19000:0:99999:7:::\n"
            f"bob:{crypt['bob']}:19000:0:99999:7:::\n"
            "locked:!:19000:0:99999:7:::\n"
            f"svc:{crypt['svc']}:19000:0:99999:7:::\n"
        )
        guide.write("saslauthd/config")
        imported = guide.run("saslauthd/import")
        # alice and bob; not the locked account, nor the uid below 1000
        assert "imported: 2 created" in imported, imported
        assert not (root / "home" / "mail-users.passwd").exists()
        logins = [
            ("alice", "alicepw"),
            ("alice", "bobpw"),
            ("bob", "bobpw"),
            ("locked", "x"),
            ("nobody", "x"),
        ]
        guide.logins(logins)
        mux = str(root / "run" / "saslauthd" / "mux")
        with cyrus_saslauthd(root, passwd, shadow), running_serve(guide.config, ready=(mux,)):
            compared = guide.run("saslauthd/compare")
        assert_verdicts(compared, logins, ["0", "255", "0", "255", "255"])
        assert_asked(guide, logins)


UNSHARE = shutil.which("unshare")


def can_unshare() -> bool:
    if UNSHARE is None:
        return False
    probe = subprocess.run(
        [UNSHARE, "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


@contextlib.contextmanager
def cyrus_saslauthd_pam(root: Path, pamd: Path) -> Iterator[Path]:
    """Cyrus saslauthd ``-a pam`` whose /etc/pam.d is ``pamd``: bind-mounted over it in a
    private mount namespace (the machine's /etc/pam.d is never written)."""
    if not can_unshare() or not Path(SASLAUTHD).exists() or not Path(TESTSASLAUTHD).exists():
        pytest.skip("needs saslauthd, testsaslauthd (sasl2-bin) and unshare -m")
    assert UNSHARE is not None
    mux = root / "saslauthd"
    mux.mkdir()
    script = f'mount --bind "$1" /etc/pam.d && exec {SASLAUTHD} -d -a pam -m "$2" -n 2'
    argv = [UNSHARE, "-m", "--propagation", "private", "sh", "-c", script]
    argv += ["sh", str(pamd), str(mux)]
    with running_saslauthd(argv, mux):
        yield mux


def test_the_saslauthd_pam_stack_lets_cyrus_saslauthd_answer_as_mailwarden() -> None:
    with private_dir("mig-pam") as root:
        guide = Guide(root)
        guide.places["/run/saslauthd/"] = f"{root}/saslauthd/"
        guide.places["/usr/bin/mailwarden"] = str(Path(sys.executable).parent / "mailwarden")
        guide.write("saslauthd/config")
        import_accounts(guide)
        # The service's stack, beside the machine's own common-* files it includes.
        pamd = root / "pam.d"
        pamd.mkdir()
        for name in ("common-auth", "common-account"):
            shutil.copy(Path("/etc/pam.d") / name, pamd / name)
        guide.write("saslauthd-pam/stack", pamd / "smtp")
        logins = [("alice", "alicepw"), ("alice", "bobpw"), ("bob", "bobpw"), ("nobody", "x")]
        guide.logins(logins)
        mux = str(root / "run" / "saslauthd" / "mux")
        with cyrus_saslauthd_pam(root, pamd), running_serve(guide.config, ready=(mux,)):
            compared = guide.run("saslauthd/compare")
        assert_verdicts(compared, logins, ["0", "255", "0", "255"])
        assert_asked(guide, logins)  # the daemon's socket; Cyrus' PAM helper decides itself
