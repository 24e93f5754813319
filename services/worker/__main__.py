"""`python -m services.worker`: run one worker process under the shared lifecycle."""

from __future__ import annotations

from services.worker.service import WorkerService
from shared.lifecycle import main as run_main
from shared.settings import WorkerSettings


def main() -> None:
    """Build the settings from the environment and run the worker until a signal."""
    run_main("worker", WorkerSettings(), WorkerService)


if __name__ == "__main__":
    main()
