"""Tansu, the memory-only Kafka-compatible broker, and the topics it must hold."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from deploy.local import paths
from deploy.local.servers.process import (
    _CMD_TIMEOUT_S,
    ServerError,
    _await,
    _Child,
    _ChildServer,
)
from shared.events import CLUSTER_TOPICS, topic_name

_TOPIC_BATCH = 16


def default_topics(prefix: str = "") -> list[str]:
    """The physical names of every Kafka topic of the system, for one topic prefix."""
    return [topic_name(prefix, name) for name in CLUSTER_TOPICS]


class KafkaBroker(_ChildServer):
    """Tansu, the memory-only Kafka-compatible broker; remembers its topics to re-create them."""

    name = "kafka"
    # SIGTERM takes 5 s with clients connected, and storage is in memory anyway.
    stop_grace_s = 1.0

    def __init__(
        self, port: int, log_path: Path, partitions: int = 1, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(port, host, log_path)
        self.partitions = partitions
        self._topics: dict[str, None] = {}  # ordered set

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients use."""
        return f"{self.host}:{self.port}"

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic created through this object (re-created after each restart)."""
        return tuple(self._topics)

    def _url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        # The advertised URL must equal the address clients use (else misleading errors).
        return [str(paths.tansu_bin()), "broker",
                "--listener-url", self._url(), "--advertised-listener-url", self._url()]

    def _wait_ready(self, child: _Child, log_offset: int) -> bool:
        def ready() -> bool:
            with self.log_path.open("rb") as f:
                f.seek(log_offset)
                return b"ready in" in f.read()

        # The log line, not the port: a closing predecessor could still answer on it.
        return _await(ready, child)

    def start(self) -> None:
        """Start the broker and (re-)create every known topic before returning."""
        with self._lock:
            running = self.is_running()
            super().start()
            if not running and self._topics:
                self._create(list(self._topics))

    def create_topics(self, names: Iterable[str]) -> None:
        """Create topics with `partitions` partitions; existing ones are fine."""
        names = list(names)
        with self._lock:
            self._topics.update(dict.fromkeys(names))
            if self.is_running():
                self._create(names)

    def delete_topics(self, names: Iterable[str]) -> None:
        """Delete topics (their data is held in memory) and stop re-creating them."""
        names = list(names)
        with self._lock:
            for name in names:
                self._topics.pop(name, None)
            if self.is_running():
                self._topic_cli("delete", names, ok_marker="does not host this topic")

    def list_topics(self) -> list[str]:
        """Names of the topics the broker holds right now (asks the broker)."""
        proc = subprocess.run(
            [str(paths.tansu_bin()), "topic", "list", "--broker", self._url()],
            capture_output=True, timeout=_CMD_TIMEOUT_S, check=False,
        )
        if proc.returncode != 0:
            raise ServerError(f"topic list failed: {proc.stdout.decode(errors='replace')}")
        return sorted(t["name"] for t in json.loads(proc.stdout))

    def _create(self, names: list[str]) -> None:
        self._topic_cli("create", names, ok_marker="already exists",
                        extra=["--partitions", str(self.partitions)])

    def _topic_cli(self, verb: str, names: list[str], ok_marker: str,
                   extra: Iterable[str] = ()) -> None:
        # A few CLI processes at a time: a restart may re-create hundreds of test topics.
        errors = []
        for i in range(0, len(names), _TOPIC_BATCH):
            procs = [
                (name, subprocess.Popen(
                    [str(paths.tansu_bin()), "topic", verb, "--broker", self._url(), *extra, name],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                ))
                for name in names[i:i + _TOPIC_BATCH]
            ]
            for name, proc in procs:
                try:
                    out, _ = proc.communicate(timeout=_CMD_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, _ = proc.communicate()
                text = out.decode(errors="replace")
                if proc.returncode != 0 and ok_marker not in text:
                    errors.append(f"{name}: rc={proc.returncode} {text.strip()}")
        if errors:
            raise ServerError(f"topic {verb} failed: " + "; ".join(errors))
