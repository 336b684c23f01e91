"""``mailgate``, ``ssh-keys`` and ``dns-zone``: the OpenPGP mail gateway and its exports."""

from __future__ import annotations

import os
import sys

import click

from mailwarden.app import (
    App,
    resolve_path,
    setup_logging,
)
from mailwarden.cli.common import (
    EX_TEMPFAIL,
    _config,
    err,
    fail,
    main,
    run_with_app,
)

# --------------------------------------------------------------------------- mail gateway


@main.command("mailgate")
@click.argument("function", type=click.Choice(["ping", "chpasswd", "chpass", "change"]))
@click.pass_context
def mailgate_cmd(ctx: click.Context, function: str) -> None:
    """Act on one OpenPGP-signed mail read from stdin (run by the MTA; docs/mailgate.md).

    Exit 0 when the mail was handled or refused (unsigned and unverifiable mail is
    only logged, never answered or bounced); 75 when the directory, the replay cache
    or the MTA is unavailable, so that the MTA keeps the mail and retries.
    """
    from mailwarden.accounts.openpgp import VerificationError, Verifier  # noqa: PLC0415
    from mailwarden.mailgate import mail  # noqa: PLC0415 - python-gnupg only here
    from mailwarden.mailgate.gateway import Function, Gateway  # noqa: PLC0415
    from mailwarden.mailgate.replay import ReplayCache, Window  # noqa: PLC0415

    cfg = _config(ctx)
    setup_logging(cfg)
    mg = cfg.mailgate
    raw = sys.stdin.buffer.read(mg.max_message_bytes + 1)
    if os.environ.get("SENDER") == "":
        # Postfix's local(8) and Exim's pipe transport say the envelope sender is
        # null: a bounce or an auto-reply, which is never a request. Never answer it.
        err.print("mailgate: null envelope sender (a bounce): ignored")
        return
    try:
        verifier = Verifier(str(resolve_path(cfg, mg.gnupg_home)), gpg_binary=mg.gpg_binary)
    except VerificationError as exc:
        fail(f"mailgate.gnupg_home: {exc}", EX_TEMPFAIL)
    control_socket = (
        str(resolve_path(cfg, cfg.server.control_socket)) if cfg.server.control_socket else ""
    )

    async def run(app: App) -> None:
        replay = ReplayCache(
            resolve_path(cfg, mg.state_dir) / "replay.db",
            Window(max_age=mg.max_age, max_future=mg.max_future, keep=mg.replay_keep),
            timeout=cfg.directory.timeout,
        )
        try:
            gateway = Gateway(
                config=mg,
                directory=app.directory,
                admin=app.admin,
                verifier=verifier,
                replay=replay,
                send=lambda message: mail.send(mg, message),
                control_socket=control_socket,
            )
            # "chpass" is the original gateway's name for chpasswd.
            await gateway.handle(Function("chpasswd" if function == "chpass" else function), raw)
        finally:
            replay.close()

    try:
        run_with_app(ctx, run)
    except SystemExit as exc:
        # No database yet (78) or another refusal of run_with_app: keep the mail queued
        # too, as below; the message is already on stderr.
        if exc.code not in (None, 0, EX_TEMPFAIL):
            sys.exit(EX_TEMPFAIL)
        raise
    except Exception as exc:
        # An exit status other than 0 or 75 makes the MTA bounce the mail to its
        # (unverified) sender, with our output in it: keep the mail queued instead.
        import logging  # noqa: PLC0415

        logging.getLogger("mailwarden.mailgate").exception("mailgate failed")
        fail(f"mailgate: unexpected error: {exc}", EX_TEMPFAIL)


@main.command("ssh-keys")
@click.argument("user")
@click.pass_context
def ssh_keys_cmd(ctx: click.Context, user: str) -> None:
    """Print USER's SSH keys for sshd's AuthorizedKeysCommand (nothing if none or unknown)."""
    from mailwarden.mailgate import exports  # noqa: PLC0415

    for line in run_with_app(ctx, lambda app: exports.ssh_keys(app.directory, user)):
        click.echo(line)


@main.command("dns-zone")
@click.option("--serial", "serial_only", is_flag=True, help="Print only the serial.")
@click.pass_context
def dns_zone_cmd(ctx: click.Context, serial_only: bool) -> None:
    """Print the zone fragment of the accounts' DNS entries ([mailgate] dns_zone)."""
    from mailwarden.mailgate import exports  # noqa: PLC0415

    cfg = _config(ctx)
    records = run_with_app(ctx, lambda app: exports.zone_records(app.directory))
    state = resolve_path(cfg, cfg.mailgate.state_dir) / "dns-serial"
    try:
        serial = exports.next_serial(state, "\n".join(records))
    except OSError as exc:
        fail(f"{state}: {exc.strerror or exc}", EX_TEMPFAIL)
    if serial_only:
        click.echo(str(serial))
    else:
        click.echo(exports.zone_fragment(cfg.mailgate.dns_zone, records, serial), nl=False)
