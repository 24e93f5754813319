"""`python -m services.scheduler`: build the settings, run the scheduler under the shared lifecycle."""

from __future__ import annotations

from services.scheduler.service import SchedulerService
from shared.lifecycle import main
from shared.settings import SchedulerSettings

if __name__ == "__main__":
    main("scheduler", SchedulerSettings(), SchedulerService)
