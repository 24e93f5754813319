"""Who is calling: a tenant and what it may do (DESIGN §10)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """What a key may do."""

    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"
    # Cluster resources shared by every tenant (queue config, pause, workers); also reads across tenants.
    CLUSTER = "cluster"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    """The resolved caller of a request or WebSocket."""

    tenant: str
    scopes: frozenset[Scope]

    def can(self, scope: Scope) -> bool:
        """A tenant's `admin` implies its `submit` and `read`, never `cluster` (which spans tenants)."""
        if scope in self.scopes:
            return True
        return scope in (Scope.SUBMIT, Scope.READ) and Scope.ADMIN in self.scopes

    @property
    def read_tenant(self) -> str | None:
        """The tenant whose rows this caller reads; None for every tenant (`cluster` reads across them, §10)."""
        return None if self.can(Scope.CLUSTER) else self.tenant


# The caller who sends no key when auth is off (`AUTH_REQUIRED=false`, loopback binds only).
DEFAULT_ADMIN = Principal(DEFAULT_TENANT, ALL_SCOPES)
