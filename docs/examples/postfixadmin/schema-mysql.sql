-- The tables Dovecot reads, as Postfix Admin's setup (public/upgrade.php, through
-- upgrade 1854) leaves them on MySQL/MariaDB. Postfix Admin creates these itself;
-- this file is for trying the example without it. Not changed for mailwarden.
CREATE TABLE domain (
    domain varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    description varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
    aliases int NOT NULL DEFAULT 0,
    mailboxes int NOT NULL DEFAULT 0,
    maxquota bigint NOT NULL DEFAULT 0,
    quota bigint NOT NULL DEFAULT 0,
    transport varchar(255) NOT NULL DEFAULT '',
    backupmx tinyint(1) NOT NULL DEFAULT '0',
    created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
    modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
    active tinyint(1) NOT NULL DEFAULT '1',
    password_expiry int NOT NULL DEFAULT 0,
    PRIMARY KEY (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='Postfix Admin - Virtual Domains';

CREATE TABLE mailbox (
    username varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    password varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    name varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
    maildir varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    quota bigint NOT NULL DEFAULT 0,
    local_part varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    domain varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
    modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
    active tinyint(1) NOT NULL DEFAULT '1',
    phone varchar(30) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
    email_other varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
    token varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
    token_validity datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
    password_expiry datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
    totp_secret varchar(255) NULL,
    smtp_active tinyint(1) NOT NULL DEFAULT '1',
    PRIMARY KEY (username),
    KEY domain (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='Postfix Admin - Virtual Mailboxes';

CREATE TABLE alias (
    address varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    goto text CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    domain varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
    description varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
    created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
    modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
    active tinyint(1) NOT NULL DEFAULT '1',
    PRIMARY KEY (address),
    KEY domain (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='Postfix Admin - Virtual Aliases';
