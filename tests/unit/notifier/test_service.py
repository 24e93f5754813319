"""The notifier obeys the service contract without touching a server."""

from __future__ import annotations

import pytest

from services.notifier.service import NotifierService
from services.notifier.settings import NotifierServiceSettings


async def test_stop_before_start_and_twice_is_harmless_and_final() -> None:
    service = NotifierService(NotifierServiceSettings())
    await service.stop()
    await service.stop()
    assert not service.failed.is_set()
    assert service.consumer is None  # nothing was opened
    with pytest.raises(RuntimeError, match="started once"):
        await service.start()
