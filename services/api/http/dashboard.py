"""The dashboard's static files at `/`: a single-page app with deep links, cache headers and its config.

Vite names every built asset by its content hash, so those are cached for a year as immutable;
`index.html` names the current assets and must be revalidated on every load (`no-cache`). A path
under one of the dashboard's pages (`/jobs/<id>`) answers `index.html`, so deep links load on a fresh
page; any other missing path (API paths, missing files, `/nope`) keeps its 404 problem.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from shared.settings import ApiSettings

API_PREFIX = "/api"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
CONFIG_PATH = "config.json"
# The first segment of every page the dashboard routes itself (dashboard/src/app.tsx: keep in step).
PAGES = frozenset({"jobs", "queues", "dlq", "schedules", "workers", "charts", "alerts"})


def is_page_path(path: str) -> bool:
    """True for a path the single-page app routes itself: under one of its pages, with no file extension."""
    parts = PurePosixPath(path).parts
    return bool(parts) and parts[0] in PAGES and "." not in parts[-1]


class DashboardFiles(StaticFiles):
    """StaticFiles with an index.html fallback for page paths, cache headers and `/config.json`."""

    def __init__(self, *, directory: Path, config: dict[str, object]) -> None:
        super().__init__(directory=directory, html=True)
        self._config = config

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file, or index.html for a page path; `config.json` tells the page where the notifier is."""
        if path == CONFIG_PATH:
            return JSONResponse(self._config, headers={"Cache-Control": REVALIDATE})
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not is_page_path(path):
                raise
            response = await super().get_response("index.html", scope)
        response.headers["Cache-Control"] = IMMUTABLE if path.startswith("assets/") else REVALIDATE
        return response


class DashboardMount(Mount):
    """The mount at `/`, blind to the API's paths.

    A mount at `/` matches every path in full, and a full match wins over an API route that
    matched the path but not the method: the API would answer 404 where it owes a 405.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """No match under the API prefix; elsewhere the usual mount match."""
        path = scope.get("path", "")
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return Match.NONE, {}
        return super().matches(scope)


def dashboard_config(settings: ApiSettings) -> dict[str, object]:
    """What the page needs besides the API: the notifier's public URL, or its port on the page's host."""
    return {"notifierUrl": settings.notifier_public_url or None, "notifierPort": settings.notifier_port}


def mount_dashboard(app: FastAPI, settings: ApiSettings) -> None:
    """Serve the built dashboard at `/` when it exists (mount it after every API route)."""
    directory = Path(settings.dashboard_dir)
    if (directory / "index.html").is_file():
        files = DashboardFiles(directory=directory, config=dashboard_config(settings))
        app.router.routes.append(DashboardMount("/", app=files, name="dashboard"))
