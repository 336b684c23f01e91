"""Files written whole or not at all.

:func:`replaced_atomically` is how mailwarden writes a file that someone reads (an
export, the mail gateway's zone serial): into a temporary file beside it, flushed
to disk, then renamed over it. A reader sees the old file or the new one, never
half of one; a failure (an exception in the block, a crash) leaves the old file as
it was and no temporary behind (a crash may leave the temporary, named
``.NAME.<random>`` beside it, never a truncated NAME).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def replaced_atomically(
    path: Path, *, mode: int = 0o600, errors: str = "strict"
) -> Iterator[TextIO]:
    """A text file (UTF-8) that replaces ``path`` when the block ends without an
    error; created with ``mode`` (0600: exports hold password hashes)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", errors=errors) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
