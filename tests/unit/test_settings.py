"""Settings: secure by default, auth off only on a loopback bind (DESIGN §10)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import ApiSettings, CommonSettings, NotifierSettings, WorkerSettings, is_loopback


@pytest.mark.parametrize("cls", [CommonSettings, ApiSettings, NotifierSettings, WorkerSettings])
def test_auth_is_required_by_default(cls: type[CommonSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH_REQUIRED", raising=False)
    monkeypatch.delenv("HOST", raising=False)
    assert cls().auth_required is True


def test_auth_off_on_every_interface_is_refused_naming_both_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_REQUIRED", "false")
    monkeypatch.setenv("HOST", "0.0.0.0")
    with pytest.raises(ValidationError) as refused:
        ApiSettings()
    message = str(refused.value)
    assert "AUTH_REQUIRED=false" in message and "HOST='0.0.0.0'" in message
    assert "loopback" in message


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "api.example.com", ""])
def test_auth_off_is_refused_on_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValidationError, match="AUTH_REQUIRED=false"):
        CommonSettings(auth_required=False, host=host)


def test_auth_off_on_127_0_0_1_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_REQUIRED", "false")
    monkeypatch.setenv("HOST", "127.0.0.1")
    settings = ApiSettings()
    assert settings.auth_required is False and settings.host == "127.0.0.1"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_auth_off_is_accepted_on_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert CommonSettings(auth_required=False, host=host).auth_required is False


def test_auth_on_accepts_any_bind() -> None:
    assert CommonSettings(host="0.0.0.0").auth_required is True


def test_otlp_is_an_exporter_setting() -> None:
    assert CommonSettings(otel_exporter="otlp").otel_exporter == "otlp"
    with pytest.raises(ValidationError):
        CommonSettings(otel_exporter="zipkin")
