"""`python -m services.notifier`."""

from __future__ import annotations

from services.notifier.service import NotifierService
from services.notifier.settings import NotifierServiceSettings
from shared.lifecycle import main

if __name__ == "__main__":
    main("notifier", NotifierServiceSettings(), NotifierService)
