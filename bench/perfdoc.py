"""docs/performance.md is written by two commands: bench/compare.py writes the
whole file and keeps the section bench/admin_commands.py owns; admin_commands.py
replaces only its own section. A section runs from its ``## `` heading to the
next one (or the end)."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
ADMIN = "## Admin commands at scale"


def section(text: str, heading: str) -> str | None:
    """The section under ``heading`` (heading line included), or None."""
    start = text.find(f"\n{heading}\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + 1)
    return text[start + 1 : end + 1 if end >= 0 else len(text)].rstrip("\n") + "\n"


def replace_section(text: str, heading: str, body: str) -> str:
    """``text`` with the section under ``heading`` replaced by ``body`` (a whole
    section, heading included), or ``body`` appended if there was none."""
    old = section(text, heading)
    if old is None:
        return text.rstrip("\n") + "\n\n" + body
    return text.replace(old, body, 1)
