"""``mailwarden import/export ldif`` and ``migrate`` between SQLite and a real slapd."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from mailwarden.config import LdapConfig
from mailwarden.directories.ldap import LdapMapping
from mailwarden.model import Account

LDIF_ENTRY = """dn: uid=carol,ou=people,dc=example,dc=org
objectClass: account
objectClass: qmailUser
uid: carol
mail: carol@example.org
mailAlternateAddress: c@example.org
accountStatus: nopop
mailQuotaSize: 1000000
userPassword: {PLAIN}tea

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people
"""


def run(cfg: Path, *args: str) -> Result:
    from mailwarden.cli import main

    return CliRunner().invoke(main, ["--config", str(cfg), *args])


def sqlite_config(tmp_path: Path, name: str = "s") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[directory]\npath = "{name}.db"\n[passwords]\nscheme = "SHA512-CRYPT"\n')
    assert run(path, "init").exit_code == 0
    return path


def ldap_toml(tmp_path: Path, config: LdapConfig) -> Path:
    path = tmp_path / "l.toml"
    path.write_text(
        '[directory]\nbackend = "ldap"\n[passwords]\nscheme = "SHA512-CRYPT"\n'
        f'[ldap]\nservers = ["{config.servers[0]}"]\nbase_dn = "{config.base_dn}"\n'
        f'bind_dn = "{config.bind_dn}"\nbind_password = "{config.bind_password}"\n'
    )
    return path


def test_an_ldif_file_imports_its_accounts_and_ignores_other_entries(tmp_path: Path) -> None:
    cfg = sqlite_config(tmp_path)
    (tmp_path / "in.ldif").write_text(LDIF_ENTRY)
    result = run(cfg, "import", "ldif", str(tmp_path / "in.ldif"), "-q")
    assert result.exit_code == 0, result.output
    assert "1 created" in result.output
    shown = run(cfg, "auth", "test", "c@example.org", "tea", "-s", "imap")
    assert shown.exit_code == 0, shown.output
    refused = run(cfg, "auth", "test", "carol", "tea", "-s", "pop3")
    assert refused.exit_code == 77


def test_export_ldif_writes_entries_the_mapping_reads_back(tmp_path: Path) -> None:
    cfg = sqlite_config(tmp_path)
    (tmp_path / "in.ldif").write_text(LDIF_ENTRY)
    assert run(cfg, "import", "ldif", str(tmp_path / "in.ldif"), "-q").exit_code == 0
    out = tmp_path / "out.ldif"
    result = run(cfg, "export", "ldif", str(out), "--base-dn", "ou=x,dc=example,dc=org")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "dn: uid=carol,ou=x,dc=example,dc=org" in text
    assert "mailAlternateAddress: c@example.org" in text
    import ldif  # type: ignore[import-untyped]

    with out.open("rb") as fh:
        records = ldif.LDIFRecordList(fh)
        records.parse()
    ((_dn, attrs),) = records.all_records
    account = LdapMapping(LdapConfig()).account_of(attrs)
    assert isinstance(account, Account) and account.quota_bytes == 1_000_000


def test_migrate_copies_sqlite_to_ldap_and_back(tmp_path: Path, ldap_config: LdapConfig) -> None:
    source = sqlite_config(tmp_path, "src")
    added = run(source, "user", "add", "dave@example.org", "--no-password")
    assert added.exit_code == 0, added.output
    (tmp_path / "in.ldif").write_text(LDIF_ENTRY)
    assert run(source, "import", "ldif", str(tmp_path / "in.ldif"), "-q").exit_code == 0
    target = ldap_toml(tmp_path, ldap_config)
    result = run(source, "migrate", "--to", str(target), "-q")
    assert result.exit_code == 0, result.output
    assert "migrated 2 account(s): 2 created" in result.output
    assert run(target, "auth", "test", "carol@example.org", "tea").exit_code == 0
    back = sqlite_config(tmp_path, "back")
    result = run(target, "migrate", "--to", str(back), "-q")
    assert result.exit_code == 0, result.output
    assert run(back, "auth", "test", "carol", "tea").exit_code == 0
    listed = run(back, "user", "list", "--json")
    assert '"carol"' in listed.output and '"dave@example.org"' in listed.output
