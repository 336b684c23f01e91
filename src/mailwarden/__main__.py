"""``python -m mailwarden``: the same as the ``mailwarden`` command."""

from mailwarden.entry import main

main()
