"""The SQLite schema: the application id and the migrations, in order (see the package
docstring, "Schema" and "Migrations").
"""

from __future__ import annotations

import sqlite3

from mailwarden import sqlitemigrations

# "MWDN" in the database header: tells our files from other SQLite databases.
APPLICATION_ID = 0x4D57444E

# The SQL form of directories.base.fingerprint_key, indexed by migration 2.
_FINGERPRINT_KEY = "upper(replace(pgp_fingerprint, ' ', ''))"

# Migration step N (1-based) brings user_version from N-1 to N. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL,
            mail TEXT,
            password TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'deleted')),
            mail_host TEXT,
            home TEXT,
            mail_location TEXT,
            uid_number INTEGER CHECK (uid_number >= 0),
            gid_number INTEGER CHECK (gid_number >= 0),
            quota_bytes INTEGER CHECK (quota_bytes >= 0),
            quota_messages INTEGER CHECK (quota_messages >= 0),
            master INTEGER NOT NULL CHECK (master IN (0, 1)),
            allow_nets TEXT NOT NULL DEFAULT '[]',
            passdb_fields TEXT NOT NULL DEFAULT '{}',
            userdb_fields TEXT NOT NULL DEFAULT '{}',
            pgp_fingerprint TEXT,
            profile TEXT NOT NULL DEFAULT '{}'
        )""",
        # login is lower-cased; name is as given. Uids and addresses are two name
        # spaces: an address may equal another account's uid (find prefers the uid).
        """CREATE TABLE logins (
            login TEXT NOT NULL,
            space TEXT NOT NULL CHECK (space IN ('uid', 'address')),
            kind TEXT NOT NULL CHECK (kind IN ('uid', 'mail', 'alternate')),
            account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            CHECK ((kind = 'uid') = (space = 'uid')),
            PRIMARY KEY (login, space)
        ) WITHOUT ROWID""",
        "CREATE INDEX logins_by_account ON logins (account_id, kind, position)",
        """CREATE TABLE services (
            account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
            PRIMARY KEY (account_id, name)
        ) WITHOUT ROWID""",
        """CREATE TABLE ssh_keys (
            account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            key TEXT NOT NULL,
            PRIMARY KEY (account_id, position)
        ) WITHOUT ROWID""",
        # One row per account with its child rows as JSON arrays, so that every
        # read of a whole account is a single statement.
        """CREATE VIEW account_rows AS SELECT a.*,
            (SELECT json_group_array(json_array(c.position, c.name)) FROM logins AS c
                WHERE c.account_id = a.id AND c.kind = 'alternate') AS alternates,
            (SELECT json_group_array(json_array(s.name, s.enabled)) FROM services AS s
                WHERE s.account_id = a.id) AS service_switches,
            (SELECT json_group_array(json_array(k.position, k.key)) FROM ssh_keys AS k
                WHERE k.account_id = a.id) AS keys
            FROM accounts AS a""",
        f"PRAGMA application_id = {APPLICATION_ID}",
    ),
    # 2: the mail gateway's DNS entries (JSON list of zone lines, like allow_nets)
    # and the index that finds an account by the fingerprint of its OpenPGP key.
    # The view is rebuilt so that its column list includes the new column.
    (
        "ALTER TABLE accounts ADD COLUMN dns_records TEXT NOT NULL DEFAULT '[]'",
        f"CREATE INDEX accounts_by_fingerprint ON accounts ({_FINGERPRINT_KEY})",
        "DROP VIEW account_rows",
        """CREATE VIEW account_rows AS SELECT a.*,
            (SELECT json_group_array(json_array(c.position, c.name)) FROM logins AS c
                WHERE c.account_id = a.id AND c.kind = 'alternate') AS alternates,
            (SELECT json_group_array(json_array(s.name, s.enabled)) FROM services AS s
                WHERE s.account_id = a.id) AS service_switches,
            (SELECT json_group_array(json_array(k.position, k.key)) FROM ssh_keys AS k
                WHERE k.account_id = a.id) AS keys
            FROM accounts AS a""",
    ),
    # 3: app passwords (one row each: a digest, never the value; the last use is
    # written in place, in batches) and the switch "app passwords only for mail".
    # Read with the account through the view, so a login is still one statement.
    (
        """CREATE TABLE app_passwords (
            account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            digest TEXT NOT NULL,
            services TEXT NOT NULL DEFAULT '[]',
            expires INTEGER,
            created INTEGER NOT NULL,
            last_used INTEGER,
            last_service TEXT,
            last_ip TEXT,
            PRIMARY KEY (account_id, id)
        ) WITHOUT ROWID""",
        """ALTER TABLE accounts ADD COLUMN app_passwords_only INTEGER NOT NULL DEFAULT 0
            CHECK (app_passwords_only IN (0, 1))""",
        "DROP VIEW account_rows",
        """CREATE VIEW account_rows AS SELECT a.*,
            (SELECT json_group_array(json_array(c.position, c.name)) FROM logins AS c
                WHERE c.account_id = a.id AND c.kind = 'alternate') AS alternates,
            (SELECT json_group_array(json_array(s.name, s.enabled)) FROM services AS s
                WHERE s.account_id = a.id) AS service_switches,
            (SELECT json_group_array(json_array(k.position, k.key)) FROM ssh_keys AS k
                WHERE k.account_id = a.id) AS keys,
            (SELECT json_group_array(json_array(p.position, p.id, p.name, p.digest,
                    p.services, p.expires, p.created, p.last_used, p.last_service,
                    p.last_ip))
                FROM app_passwords AS p WHERE p.account_id = a.id) AS apps
            FROM accounts AS a""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Apply the steps after ``version`` (sqlitemigrations.apply)."""
    sqlitemigrations.apply(conn, version, MIGRATIONS)
