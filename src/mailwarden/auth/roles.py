"""Who may do what: the one rule the web page and the admin API both ask.

What belongs here: the grants (an administrator's role, an API token's scope), the
actions they are checked against, and :func:`permits`. Pure: no I/O, no store.

* ``admin`` may do everything: create, change and delete accounts, create and
  remove administrators, grant roles, issue and revoke tokens, reset a second factor.
* ``helpdesk`` may search and read (login histories too), reset passwords and
  lift bans (the daily work of a support desk), but not change or delete an
  account, and never grant itself or anyone more: the role cannot reach admin
  rights by any chain of its actions.
* ``read`` (API tokens only: monitoring, reports) may only read, and not the
  login history (who logged in from where is personal data).

A bootstrap session (the shared ``http.admin_token``) gets no grant at all: it may
only create the first administrator (accounts/staff.py), nothing here applies.
"""

from __future__ import annotations

import enum

from mailwarden.errors import NotPermitted


class Grant(enum.StrEnum):
    """A role or scope, from the most to the least powerful."""

    ADMIN = "admin"
    HELPDESK = "helpdesk"
    READ = "read"


class Action(enum.StrEnum):
    READ = "read"  # search and show accounts, bans, metrics, the audit log
    # An account's login history: when and from which addresses a person logged in.
    # Personal data a monitoring token has no need of: administrators and the
    # helpdesk ("was that you?"), not the read scope.
    READ_HISTORY = "read-history"
    RESET_PASSWORD = "reset-password"  # noqa: S105 (an action, not a secret)
    UNBLOCK = "unblock"  # lift bans and account protection, flush cached logins
    EDIT_ACCOUNT = "edit-account"  # create and change accounts
    DELETE_ACCOUNT = "delete-account"
    MANAGE_STAFF = "manage-staff"  # administrators, roles, API tokens, second factors


#: Making or revoking another person's app password edits their account: the admin
#: API and the web page both require this (reading them is READ).
APP_PASSWORDS = Action.EDIT_ACCOUNT

#: Roles an administrator may have (a token may also be ``read``).
ADMIN_ROLES: tuple[Grant, ...] = (Grant.ADMIN, Grant.HELPDESK)
TOKEN_SCOPES: tuple[Grant, ...] = (Grant.ADMIN, Grant.HELPDESK, Grant.READ)

_ALLOWED: dict[Grant, frozenset[Action]] = {
    Grant.ADMIN: frozenset(Action),
    Grant.HELPDESK: frozenset(
        {Action.READ, Action.READ_HISTORY, Action.RESET_PASSWORD, Action.UNBLOCK}
    ),
    Grant.READ: frozenset({Action.READ}),
}


def grant_of(value: str) -> Grant | None:
    """The grant named ``value``, or None."""
    try:
        return Grant(value)
    except ValueError:
        return None


def permits(grant: Grant | str, action: Action) -> bool:
    """Whether ``grant`` allows ``action`` (an unknown grant allows nothing)."""
    found = grant if isinstance(grant, Grant) else grant_of(grant)
    return found is not None and action in _ALLOWED[found]


def require(grant: Grant | str, action: Action) -> None:
    """:func:`permits`, or NotPermitted naming what was refused."""
    if not permits(grant, action):
        raise NotPermitted(f"the {grant} role may not {action.value.replace('-', ' ')}")
