"""The worker obeys the service contract without touching a server."""

from __future__ import annotations

import pytest

from services.worker.service import WorkerService
from shared.settings import WorkerSettings


async def test_stop_before_start_and_twice_is_harmless_and_final() -> None:
    service = WorkerService(WorkerSettings(worker_id="w-unit"))
    await service.stop()
    await service.stop()
    assert not service.failed.is_set()
    assert service.executor is None  # nothing was opened
    with pytest.raises(RuntimeError, match="started once"):
        await service.start()
