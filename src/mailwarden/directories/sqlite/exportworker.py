"""An export worker process: ``python -m mailwarden.directories.sqlite.exportworker FD``.

``export passwd-file`` starts these on a SQLite directory
(:mod:`mailwarden.directories.sqlite.export`, which says how they are asked, answer,
and are stopped). FD is the worker's end of a socket pair: it is told the file, the
statement timeout and the formatter, then asked for slices of accounts, and sends
each back formatted, in multiprocessing's frames (a length, then a pickle: both
ends are this installation). It exits when told to, or when the socket ends.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from mailwarden.directories.sqlite.export import work


def main() -> None:
    work(Connection(int(sys.argv[1])))


if __name__ == "__main__":
    main()
