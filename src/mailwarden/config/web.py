"""The sections of the HTTP side and the mail gateway: ``[http]`` and ``[mailgate]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailwarden.config.build import Section, require, require_networks


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig(Section):
    """``[http]``: the HTTP API (Nauthilus-compatible auth endpoint); see docs/http-api.md."""

    enabled: bool = False
    listen: tuple[str, ...] = ("127.0.0.1:9080",)
    tls_cert: str = ""
    tls_key: str = ""
    auth_username: str = ""
    auth_password: str = ""
    auth_password_file: str = ""
    allow_list_accounts: bool = False
    admin_token: str = ""
    admin_token_file: str = ""
    metrics_token: str = ""
    metrics_token_file: str = ""
    disabled_text: str = "Account not enabled"
    attributes: dict[str, str] = field(default_factory=dict)
    nginx_backends: dict[str, dict[str, str]] = field(default_factory=dict)
    nginx_default_host: str = ""
    max_body_bytes: int = 65536
    web_enabled: bool = True
    admin_username: str = "admin"
    session_secret_file: str = ""
    session_lifetime: float = 3600.0
    min_password_length: int = 10
    max_connections: int = 1000
    header_timeout: float = 20.0
    idle_timeout: float = 60.0
    metrics_services: tuple[str, ...] = (
        "imap",
        "pop3",
        "smtp",
        "submission",
        "lmtp",
        "sieve",
        "doveadm",
    )
    trusted_proxies: tuple[str, ...] = ()
    totp_issuer: str = "mailwarden"

    def check(self, key: str) -> None:
        require(bool(self.admin_username), f"{key}.admin_username", "a non-empty name")
        require(self.session_lifetime >= 60, f"{key}.session_lifetime", "seconds >= 60")
        require(bool(self.totp_issuer.strip()), f"{key}.totp_issuer", "a non-empty name")
        require(self.min_password_length >= 1, f"{key}.min_password_length", "an integer >= 1")

        for i, addr in enumerate(self.listen):
            host, sep, port = addr.rpartition(":")
            require(
                bool(sep) and bool(host) and port.isdigit() and 0 < int(port) < 65536,
                f"{key}.listen[{i}]",
                "HOST:PORT such as 127.0.0.1:9080 or [::1]:9080",
            )
        require(bool(self.tls_cert) == bool(self.tls_key), f"{key}.tls_key", "set with tls_cert")
        require(self.max_body_bytes >= 1024, f"{key}.max_body_bytes", "an integer >= 1024")
        require(self.max_connections >= 1, f"{key}.max_connections", "an integer >= 1")
        require(self.header_timeout > 0, f"{key}.header_timeout", "seconds > 0")
        require(self.idle_timeout > 0, f"{key}.idle_timeout", "seconds > 0")
        require_networks(self.trusted_proxies, f"{key}.trusted_proxies", "127.0.0.1/32")
        # The sources in ``attributes`` are checked against protocols.nauthilus by
        # mailwarden.confignames (the registry's owner).


MAILGATE_FIELDS: tuple[str, ...] = (
    "c",
    "l",
    "facsimiletelephonenumber",
    "telephonenumber",
    "postaladdress",
    "postalcode",
    "loginshell",
    "emailforward",
    "ircnick",
    "onvacation",
    "labeledurl",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MailgateConfig(Section):
    """``[mailgate]``: the OpenPGP-signed self-service gateway; see docs/mailgate.md."""

    gnupg_home: str = "/var/lib/mailwarden/gnupg"
    gpg_binary: str = "gpg"
    state_dir: str = "/var/lib/mailwarden/mailgate"
    chpasswd_phrase: str = "Please change my mail password"
    max_age: float = 4 * 86400.0
    max_future: float = 3 * 86400.0
    replay_keep: float = 7 * 86400.0
    sendmail: str = "/usr/sbin/sendmail"
    smtp_host: str = ""
    smtp_port: int = 25
    from_address: str = ""
    signing_key: str = ""
    max_message_bytes: int = 1_048_576
    fields: tuple[str, ...] = MAILGATE_FIELDS
    login_shells: tuple[str, ...] = (
        "/bin/sh",
        "/bin/bash",
        "/usr/bin/bash",
        "/bin/zsh",
        "/usr/bin/zsh",
        "/bin/dash",
        "/usr/bin/fish",
    )
    dns_zone: str = ""
    max_ssh_keys: int = 20
    ssh_key_blocklist: tuple[str, ...] = ()
    atomic: bool = False
    dns_underscore_names: tuple[str, ...] = ()

    def check(self, key: str) -> None:
        require(bool(self.chpasswd_phrase.strip()), f"{key}.chpasswd_phrase", "a phrase")
        for name in ("max_age", "max_future", "replay_keep"):
            require(getattr(self, name) > 0, f"{key}.{name}", "seconds > 0")
        require(
            self.replay_keep >= self.max_age + self.max_future,
            f"{key}.replay_keep",
            "at least max_age + max_future (a replay must outlive the clock window)",
        )
        require(0 < self.smtp_port < 65536, f"{key}.smtp_port", "a port number")
        require(bool(self.sendmail or self.smtp_host), f"{key}.sendmail", "set (or smtp_host)")
        require(self.max_message_bytes >= 1024, f"{key}.max_message_bytes", "an integer >= 1024")
        require(self.max_ssh_keys >= 1, f"{key}.max_ssh_keys", "an integer >= 1")
        for i, name in enumerate(self.fields):
            require(name.lower() in MAILGATE_FIELDS, f"{key}.fields[{i}]", "a field of the list")
        for i, name in enumerate(self.dns_underscore_names):
            require(
                name.startswith("_") and name.strip() == name and "." not in name,
                f"{key}.dns_underscore_names[{i}]",
                "a single DNS label starting with _ (e.g. _acme-challenge)",
            )
