"""Structural contracts: migrations numbered, services independent, compose in step with DESIGN §8."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from shared.db.migrate import load_migrations

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("api", "scheduler", "worker", "analytics", "notifier")


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_no_service_imports_another() -> None:
    for name in SERVICES:
        for path in (ROOT / "services" / name).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                modules = []
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    modules = [node.module]
                for module in modules:
                    parts = module.split(".")
                    if parts[0] == "services" and len(parts) > 1:
                        assert parts[1] == name, f"{path} imports {module}"


LOOPBACK_UNLESS_CHANGED = "${CONVEYOR_PUBLISH_HOST:-127.0.0.1}:"


def test_compose_matches_the_design_ports_and_waits_for_health() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    expected = {"api": 8000, "notifier": 8001, "scheduler": 8010, "worker": 8020, "analytics": 8030}
    for name, port in expected.items():
        svc = services[name]
        assert svc["command"] == ["python", "-m", f"services.{name}"]
        assert f"{LOOPBACK_UNLESS_CHANGED}{port}:{port}" in svc["ports"]
        assert str(port) in " ".join(svc["healthcheck"]["test"])
        for dep in ("postgres", "redis", "kafka"):
            assert svc["depends_on"][dep]["condition"] == "service_healthy"
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for server in ("postgres", "redis", "kafka"):
        assert "healthcheck" in services[server]


def test_compose_is_secure_by_default() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, svc in services.items():
        for published in svc.get("ports", []):
            assert published.startswith(LOOPBACK_UNLESS_CHANGED), f"{name} publishes {published} on every interface"
        assert str(svc.get("environment", {}).get("AUTH_REQUIRED", "true")).lower() == "true", name
    init = services["init"]
    assert init["command"][:4] == ["python", "-m", "deploy.keys", "ensure"]
    assert {"--migrate", "--all-scopes"} <= set(init["command"])
    key_file = init["command"][init["command"].index("--file") + 1]
    assert any(volume.endswith(":" + key_file.rsplit("/", 1)[0]) for volume in init["volumes"])
    for name in ("api", "notifier", "scheduler", "worker", "analytics"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
