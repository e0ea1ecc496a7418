"""Optional token authentication (off by default: a local server trusts its user).

With a tokens file, each token names a user and the rights it grants::

    {"tokens": {"3f9c...": {"user": "alice", "rights": ["inference", "train"]}}}

A user then sees and uses the shipped models (no owner) and the models they trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Right = Literal["inference", "train"]
RIGHTS: tuple[Right, ...] = ("inference", "train")


class NotAuthorized(PermissionError):
    """The token is unknown or lacks the right asked for (HTTP 403)."""


@dataclass(frozen=True)
class User:
    name: str
    rights: frozenset[str]


@dataclass(frozen=True)
class TokenAuth:
    """Tokens -> users; ``users`` empty and ``enabled`` False means everyone is allowed."""

    users: dict[str, User]
    enabled: bool

    @classmethod
    def disabled(cls) -> TokenAuth:
        return cls({}, enabled=False)

    @classmethod
    def from_file(cls, path: Path | None) -> TokenAuth:
        """Read a tokens file; a malformed one stops the server at start, not at a request."""
        if path is None:
            return cls.disabled()
        entries = json.loads(Path(path).read_text())["tokens"]
        users = {}
        for token, entry in entries.items():
            rights = frozenset(entry.get("rights", RIGHTS))
            if not token or not entry.get("user") or not rights <= set(RIGHTS):
                raise ValueError(f"bad entry in tokens file {path}: user and rights {RIGHTS}")
            users[token] = User(entry["user"], rights)
        return cls(users, enabled=True)

    def user(self, token: str | None, right: Right) -> str | None:
        """The user a token acts for (None with auth off); raises NotAuthorized."""
        if not self.enabled:
            return None
        found = self.users.get(token or "")
        if found is None:
            raise NotAuthorized("Unknown or missing token")
        if right not in found.rights:
            raise NotAuthorized(f"This token has no '{right}' right")
        return found.name

    def is_valid(self, token: str | None) -> bool:
        return not self.enabled or (token or "") in self.users

    def can_see(self, user: str | None, owner: str | None) -> bool:
        """Shipped and pulled models (no owner) are everyone's; trained ones their owner's."""
        return not self.enabled or owner is None or owner == user
