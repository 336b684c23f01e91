"""The ``mailwarden`` console script (and ``python -m mailwarden``): a tiny dispatcher.

``mailwarden checkpassword`` runs once per POP3 login, so it must not pay for the
command line's imports (click, rich, the account modules: about 250 ms). This
module looks at the arguments by hand: ``[-c FILE | --config FILE | --config=FILE]
checkpassword SUBPROGRAM...`` goes to :func:`mailwarden.checkpassword.run`; every
other command, and ``checkpassword -h/--help``, goes to :mod:`mailwarden.cli` as
before. Nothing else may be imported here.
"""

from __future__ import annotations

import sys


def checkpassword_args(argv: list[str]) -> tuple[str | None, list[str]] | None:
    """``(config path, subprogram)`` when ``argv`` is a checkpassword call, else None."""
    config: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-c", "--config"):
            if i + 1 >= len(argv):
                return None
            config = argv[i + 1]
            i += 2
        elif arg.startswith("--config="):
            config = arg.removeprefix("--config=")
            i += 1
        elif arg.startswith("-c") and len(arg) > 2:
            config = arg[2:]
            i += 1
        elif arg == "checkpassword":
            rest = argv[i + 1 :]
            if rest and rest[0] in ("-h", "--help"):
                return None
            # click would take a leading "--" as the end of its options.
            return config, rest[1:] if rest[:1] == ["--"] else rest
        else:
            return None
    return None


def main() -> None:
    """Dispatch: the lean checkpassword, or the full command line."""
    found = checkpassword_args(sys.argv[1:])
    if found is not None:
        from mailwarden import checkpassword  # noqa: PLC0415 - the point of this module

        checkpassword.run(*found)
    from mailwarden.cli import main as cli_main  # noqa: PLC0415

    cli_main(prog_name="mailwarden")
