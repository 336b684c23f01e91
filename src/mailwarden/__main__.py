"""``python -m mailwarden``: the same as the ``mailwarden`` command."""

from mailwarden.cli import main

main(prog_name="mailwarden")
