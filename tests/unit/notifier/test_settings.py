"""The notifier's settings: secure by default."""

from __future__ import annotations

import pytest

from services.notifier.settings import NotifierServiceSettings


def test_auth_is_required_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH_REQUIRED", raising=False)
    assert NotifierServiceSettings().auth_required is True
    monkeypatch.setenv("AUTH_REQUIRED", "false")
    assert NotifierServiceSettings().auth_required is False
