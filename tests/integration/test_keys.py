"""`python -m deploy.keys` against a real database: what compose's `init` and an operator run."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncpg
import pytest

from deploy.keys import main
from shared.auth.keys import resolve_key
from shared.auth.principal import ALL_SCOPES, Principal, Scope
from tests.fixtures.servers import run_async


def principal_of(dsn: str, key: str) -> Principal | None:
    async def lookup() -> Principal | None:
        conn = await asyncpg.connect(dsn)
        try:
            return await resolve_key(conn, key)
        finally:
            await conn.close()

    return run_async(lookup())


@pytest.fixture
def dsn(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("CONVEYOR_API_KEY", raising=False)
    return database_url


def test_create_prints_a_key_with_the_scopes_asked_for(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "--tenant", "acme", "--scope", "read", "--scope", "submit"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("cvk_")
    assert principal_of(dsn, key) == Principal("acme", frozenset({Scope.READ, Scope.SUBMIT}))


def test_ensure_writes_an_admin_key_once_and_keeps_it(dsn: str, tmp_path: Path) -> None:
    file = tmp_path / "keys" / "compose-admin-key"
    args = ["ensure", "--migrate", "--tenant", "default", "--all-scopes", "--file", str(file)]
    assert main(args) == 0
    key = file.read_text().strip()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert principal_of(dsn, key) == Principal("default", ALL_SCOPES)
    assert main(args) == 0  # compose runs it on every `up`
    assert file.read_text().strip() == key
    file.write_text("cvk_revoked-or-from-another-database\n")
    assert main(args) == 0
    assert file.read_text().strip() not in (key, "cvk_revoked-or-from-another-database")


def test_ensure_registers_the_operators_key(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = "an-operator-chosen-key-of-40-characters!"
    monkeypatch.setenv("CONVEYOR_API_KEY", given)
    file = tmp_path / "compose-admin-key"
    args = ["ensure", "--tenant", "default", "--all-scopes", "--file", str(file)]
    assert main(args) == 0
    assert main(args) == 0  # already registered: fine
    assert principal_of(dsn, given) == Principal("default", ALL_SCOPES)
    assert not file.exists()  # the operator has it already
    assert main(["ensure", "--tenant", "other", "--scope", "read", "--file", str(file)]) == 1


def test_ensure_refuses_a_short_operator_key(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CONVEYOR_API_KEY", "short")
    assert main(["ensure", "--all-scopes", "--file", str(tmp_path / "k")]) == 1
    assert "at least 32 characters" in caplog.text
    assert principal_of(dsn, "short") is None


def test_ensure_writes_the_tenants_webhook_secret_once(dsn: str, tmp_path: Path) -> None:
    secret_file = tmp_path / "compose-webhook-secret"
    args = ["ensure", "--migrate", "--tenant", "hooks-tenant", "--all-scopes", "--file", str(tmp_path / "key"),
            "--webhook-secret-file", str(secret_file)]
    assert main(args) == 0
    secret = secret_file.read_text().strip()
    assert secret.startswith("whsec_") and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert main(args) == 0  # compose runs it on every `up`: the secret stays
    assert secret_file.read_text().strip() == secret
