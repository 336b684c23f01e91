"""Every exception mailwarden defines is in errors.py's tree, and the tree drawn in its
docstring is the classes' real hierarchy."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import mailwarden
from mailwarden import errors
from mailwarden.errors import LocalProtocolError, MailwardenError, ProtocolError
from mailwarden.sasl.plain import Plain


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a mailwarden module, by name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(mailwarden.__path__, "mailwarden."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found[cls.__name__] = cls
    return found


def drawn_tree() -> dict[str, str]:
    """The docstring's tree: class name -> the name it hangs under (by its column)."""
    assert errors.__doc__ is not None
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        branch = re.search(r"[├└]── (\w+)", line)
        root = re.match(r"^    (MailwardenError) ", line)
        match = branch or root
        if match is None:
            continue
        column, name = match.start(1), match.group(1)
        while stack and stack[-1][0] >= column:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((column, name))
    return parents


EXCEPTIONS = defined_exceptions()


@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
def test_every_exception_is_a_mailwarden_error_drawn_under_its_base(name: str) -> None:
    cls = EXCEPTIONS[name]
    assert issubclass(cls, MailwardenError)
    if cls is MailwardenError:
        return
    tree = drawn_tree()
    assert name in tree, f"{name} is not drawn in errors.py's tree"
    ours = [base for base in cls.__bases__ if issubclass(base, MailwardenError)]
    assert [base.__name__ for base in ours] == [tree[name]]


def test_every_drawn_name_is_a_class() -> None:
    assert set(drawn_tree()) <= set(EXCEPTIONS)


def test_a_local_protocol_error_is_never_taken_for_the_peers() -> None:
    assert not issubclass(LocalProtocolError, ProtocolError)
    assert not issubclass(ProtocolError, LocalProtocolError)
    mechanism = Plain()
    mechanism.start(b"\0alice\0secret")
    with pytest.raises(LocalProtocolError):
        mechanism.start(b"\0alice\0secret")
