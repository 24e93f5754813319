"""`python -m services.analytics`."""

from __future__ import annotations

from services.analytics.service import AnalyticsService
from shared.lifecycle import main
from shared.settings import AnalyticsSettings

if __name__ == "__main__":
    main("analytics", AnalyticsSettings(), AnalyticsService)
