"""Who is calling: a tenant and what it may do (DESIGN §10)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """What a key may do."""

    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    """The resolved caller of a request or WebSocket."""

    tenant: str
    scopes: frozenset[Scope]

    def can(self, scope: Scope) -> bool:
        """Admin implies every scope."""
        return scope in self.scopes or Scope.ADMIN in self.scopes


DEFAULT_ADMIN = Principal(DEFAULT_TENANT, ALL_SCOPES)
