"""`make dev` as a developer meets it: one command up, the README's examples work, Ctrl-C cleans up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from deploy.local.servers import free_port, port_in_use
from tests.fixtures.polling import wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PORT_VARS = ("POSTGRES_PORT", "REDIS_PORT", "KAFKA_PORT", "API_PORT", "NOTIFIER_PORT", "SCHEDULER_PORT",
             "WORKER_PORT", "ANALYTICS_PORT")


def readme_api_examples() -> list[str]:
    """The shell blocks of the README's API section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The API"):]
    section = section[: section.index("\n## ", 5)]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def processes_mentioning(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next(line for line in (entry / "status").read_text().splitlines()
                             if line.startswith("State:"))
            except (OSError, StopIteration):
                continue
            if marker in cmd and " Z " not in state + " ":
                found.append(f"{entry.name}: {cmd}")
    return found


def test_make_dev_runs_the_readme_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / ".conveyor"
    ports = {var: free_port() for var in PORT_VARS}
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"}}
    env.update({var: str(port) for var, port in ports.items()}, CONVEYOR_HOME=str(home))
    output = tmp_path / "make-dev.log"  # a file, not a pipe: nobody reads while it runs
    runner = subprocess.Popen([sys.executable, "-m", "deploy.local"], cwd=ROOT, env=env,
                              stdout=output.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:

        def ready() -> bool:
            assert runner.poll() is None, output.read_text(errors="replace")
            return (home / "env").exists()

        wait_until(ready, timeout_s=120, every_s=0.2, what="make dev becoming ready")
        values = dict(line.split("=", 1) for line in (home / "env").read_text().splitlines())
        for key in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "API_URL", "NOTIFIER_URL",
                    "CONVEYOR_API_KEY", "CONVEYOR_WEBHOOK_SECRET"):
            assert values.get(key), f"{key} missing from .conveyor/env"
        assert values["API_URL"] == f"http://127.0.0.1:{ports['API_PORT']}"

        script = "set -euo pipefail\n" + "\n".join(readme_api_examples())
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        job_id = done.stdout.split()[0]

        key = values["CONVEYOR_API_KEY"].strip("'")
        headers = {"Authorization": f"Bearer {key}"}
        anonymous = httpx.get(f"{values['API_URL']}/api/v1/jobs", timeout=5)
        assert anonymous.status_code == 401, anonymous.text  # make dev requires the printed key
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        job = wait_until(lambda: httpx.get(f"{values['API_URL']}/api/v1/jobs/{job_id}", headers=headers,
                                           timeout=5).json(),
                         lambda job: job["status"] == "completed", timeout_s=30, every_s=0.2, what="the job completing")
        assert job["result"] == {"to": "ada@example.com"}
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            raise
    banner = output.read_text(errors="replace")
    assert key in banner and f"ws://127.0.0.1:{ports['NOTIFIER_PORT']}/ws" in banner
    assert runner.returncode == 0, banner[-3000:]
    assert not processes_mentioning(str(home)), processes_mentioning(str(home))
    assert not processes_mentioning(f"--port {ports['REDIS_PORT']}")
    busy = [var for var, port in ports.items() if port_in_use(port)]
    assert busy == [], f"ports still in use after Ctrl-C: {busy}"
