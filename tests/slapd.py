"""A real OpenLDAP ``slapd`` in a temp dir, for tests and bench/ scripts.

:class:`Slapd` builds a private cn=config with ``slapadd -n0`` (mdb database,
core, cosine, nis, inetorgperson, qmail-ldap and mailwarden schemas), starts
``slapd`` in its own process group on a free loopback port plus an ``ldapi://``
socket, and stops it (SIGCONT first, in case a test froze it, then SIGTERM and
finally SIGKILL of the group). Nothing outside the temp dir is written; the
machine's /etc/ldap/schema files are only read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from importlib import resources
from pathlib import Path

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "rootsecret"
SERVICE_DN = f"cn=mailwarden,{SUFFIX}"
SERVICE_PW = "servicesecret"
SYSTEM_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")


def have_slapd() -> bool:
    return all(shutil.which(p) or Path(f"/usr/sbin/{p}").exists() for p in ("slapd", "slapadd"))


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def slappasswd(secret: str, scheme: str) -> str:
    """The userPassword value ``slappasswd -h {scheme}`` makes for ``secret``."""
    args = [_tool("slappasswd"), "-h", scheme, "-s", secret]
    if scheme == "{CRYPT}":
        args += ["-c", "$6$%.16s"]  # libcrypt SHA-512, as sites set olcPasswordCryptSaltFormat
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def make_certificates(root: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 (``openssl``): (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (root / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=mailwarden test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    ext = root / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


def _config_ldif(
    root: Path, tls: tuple[Path, Path, Path] | None = None, *, substrings: bool = True
) -> str:
    schemas = [f"file:///etc/ldap/schema/{name}.ldif" for name in SYSTEM_SCHEMAS]
    for name in ("qmail", "mailwarden"):
        path = resources.files("mailwarden.ldap") / f"{name}.ldif"
        schemas.append(f"file://{path}")
    includes = "\n".join(f"include: {s}\n" for s in schemas)
    # Substring indexes serve search() patterns (user list), but make every add update
    # long ID lists: bench/migrate.py measures writes with and without them.
    index = "eq,sub" if substrings else "eq"
    tls_lines = ""
    if tls is not None:
        ca, cert, key = tls
        tls_lines = (
            f"olcTLSCACertificateFile: {ca}\nolcTLSCertificateFile: {cert}\n"
            f"olcTLSCertificateKeyFile: {key}\n"
        )
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {root}/slapd.pid
{tls_lines}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{includes}
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: unlimited

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {ROOT_PW}
olcDbDirectory: {root}/db
olcDbMaxSize: 8589934592
olcDbNoSync: TRUE
olcSizeLimit: unlimited
olcDbIndex: objectClass eq
olcDbIndex: uid {index}
olcDbIndex: mail {index}
olcDbIndex: mailAlternateAddress {index}
olcAccess: {{0}}to attrs=userPassword by dn.exact="{SERVICE_DN}" write
  by self =w by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact="{SERVICE_DN}" write by * none
"""


def base_ldif(extra_ous: tuple[str, ...] = ("people",)) -> str:
    """The suffix entry, the service account and ``ou=...`` containers."""
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n"
        "o: Example\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: mailwarden\nuserPassword: {SERVICE_PW}\n",
    ]
    parts += [
        f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n" for ou in extra_ous
    ]
    return "\n".join(parts)


class Slapd:
    """One slapd in ``root``; :meth:`start` and :meth:`stop` may be called repeatedly."""

    def __init__(
        self,
        root: Path,
        *,
        data_ldif: str | None = None,
        tls: bool = False,
        substring_indexes: bool = True,
    ) -> None:
        self.root = root
        self.port = free_port()
        self.socket = root / "ldapi"
        self.url = f"ldap://127.0.0.1:{self.port}/"
        self.ldapi = "ldapi://" + urllib.parse.quote(str(self.socket), safe="")
        self.proc: subprocess.Popen[bytes] | None = None
        (root / "slapd.d").mkdir(parents=True)
        (root / "db").mkdir()
        self.certificates = make_certificates(root) if tls else None
        config = _config_ldif(root, self.certificates, substrings=substring_indexes)
        (root / "config.ldif").write_text(config)
        self._slapadd(["-n0", "-F", str(root / "slapd.d"), "-l", str(root / "config.ldif")])
        (root / "data.ldif").write_text(data_ldif if data_ldif is not None else base_ldif())
        self._slapadd(
            ["-F", str(root / "slapd.d"), "-b", SUFFIX, "-q", "-l", str(root / "data.ldif")]
        )

    def _slapadd(self, args: list[str]) -> None:
        done = subprocess.run(
            [_tool("slapadd"), *args], check=False, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"slapadd {args} failed: {done.stderr}")

    def start(self, *, timeout: float = 10.0) -> None:
        assert self.proc is None
        log = open(self.root / "slapd.log", "ab")  # noqa: SIM115 - lives as long as slapd
        self.proc = subprocess.Popen(
            [
                _tool("slapd"),
                "-F",
                str(self.root / "slapd.d"),
                "-h",
                f"{self.url} {self.ldapi}",
                "-d",
                "0",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"slapd exited: {(self.root / 'slapd.log').read_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not start listening in time")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
