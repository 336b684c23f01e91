-- The tables Dovecot reads, as Postfix Admin's setup (public/upgrade.php, through
-- upgrade 1854) leaves them on PostgreSQL. Postfix Admin creates these itself; this
-- file is for trying the example without it. Not changed for mailwarden.
CREATE TABLE domain (
    domain varchar(255) NOT NULL,
    description varchar(255) NOT NULL DEFAULT '',
    aliases integer NOT NULL DEFAULT 0,
    mailboxes integer NOT NULL DEFAULT 0,
    maxquota bigint NOT NULL DEFAULT 0,
    quota bigint NOT NULL DEFAULT 0,
    transport varchar(255) DEFAULT NULL,
    backupmx boolean NOT NULL DEFAULT 'f',
    created timestamp with time zone DEFAULT '2000-01-01',
    modified timestamp with time zone DEFAULT '2000-01-01',
    active boolean NOT NULL DEFAULT 't',
    password_expiry integer NOT NULL DEFAULT 0,
    PRIMARY KEY (domain)
);

CREATE TABLE mailbox (
    username varchar(255) NOT NULL,
    password varchar(255) NOT NULL,
    name varchar(255) NOT NULL DEFAULT '',
    maildir varchar(255) NOT NULL,
    quota bigint NOT NULL DEFAULT 0,
    local_part varchar(255) NOT NULL,
    domain varchar(255) REFERENCES domain,
    created timestamp with time zone DEFAULT '2000-01-01',
    modified timestamp with time zone DEFAULT '2000-01-01',
    active boolean NOT NULL DEFAULT 't',
    phone varchar(30) NOT NULL DEFAULT '',
    email_other varchar(255) NOT NULL DEFAULT '',
    token varchar(255) NOT NULL DEFAULT '',
    token_validity timestamp with time zone DEFAULT '2000-01-01',
    password_expiry timestamp with time zone DEFAULT '2000-01-01',
    totp_secret varchar(255) NULL,
    smtp_active boolean NOT NULL DEFAULT 't',
    PRIMARY KEY (username)
);

CREATE TABLE alias (
    address varchar(255) NOT NULL,
    goto text NOT NULL,
    domain varchar(255) REFERENCES domain,
    description varchar(255) NOT NULL DEFAULT '',
    created timestamp with time zone DEFAULT '2000-01-01',
    modified timestamp with time zone DEFAULT '2000-01-01',
    active boolean NOT NULL DEFAULT 't',
    PRIMARY KEY (address)
);
