"""The three embedded servers (PostgreSQL, Valkey, Tansu) as small synchronous classes.

Synchronous on purpose: pytest session fixtures call them directly and the asyncio runner
calls them through `asyncio.to_thread`. Valkey and Tansu run as Popen children in their own
session (Ctrl-C reaches only us), each reaped by one thread so no zombie survives.
Measured behaviour and traps: ../shared/notes/embedded-servers.md.
"""

from deploy.local.servers.kafka import KafkaBroker, default_topics
from deploy.local.servers.postgres import PostgresServer
from deploy.local.servers.process import (
    ExitListener,
    ServerError,
    die_with_parent,
    free_port,
    port_in_use,
    tail,
    wait_port_free,
)
from deploy.local.servers.valkey import ValkeyServer

__all__ = [
    "ExitListener",
    "KafkaBroker",
    "PostgresServer",
    "ServerError",
    "ValkeyServer",
    "default_topics",
    "die_with_parent",
    "free_port",
    "port_in_use",
    "tail",
    "wait_port_free",
]
