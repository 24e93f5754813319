"""`python -m services.api`: the REST API on API_PORT (default 8000)."""

from __future__ import annotations

from services.api.service import ApiService
from shared.lifecycle import main
from shared.settings import ApiSettings


def run() -> None:
    """Build settings from the environment and run the service until SIGTERM/SIGINT."""
    main("api", ApiSettings(), ApiService)


if __name__ == "__main__":
    run()
