"""Build the dashboard for `make dev` when it is missing or older than its sources.

`npm ci` (only when the lockfile changed since the last install) then `npm run build` into
`dashboard/dist`, the folder the API serves at `/`. Without node and npm the cluster still
starts, and the log says the dashboard is not served.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from deploy.local.paths import REPO_ROOT

log = logging.getLogger(__name__)

DASHBOARD_DIR = REPO_ROOT / "dashboard"
# The files and folders whose change makes the build stale.
SOURCES = ("src", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json")
INSTALL_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 300.0


def newest_mtime(root: Path, names: tuple[str, ...]) -> float:
    """The latest modification time among `names` under `root` (folders searched through)."""
    newest = 0.0
    for name in names:
        path = root / name
        files = path.rglob("*") if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                newest = max(newest, file.stat().st_mtime)
    return newest


def is_stale(root: Path = DASHBOARD_DIR) -> bool:
    """True when `dist/index.html` is missing or older than any source."""
    built = root / "dist" / "index.html"
    return not built.is_file() or built.stat().st_mtime < newest_mtime(root, SOURCES)


def needs_install(root: Path = DASHBOARD_DIR) -> bool:
    """True when node_modules is missing or older than the lockfile (npm ci rewrites its own marker)."""
    marker = root / "node_modules" / ".package-lock.json"
    return not marker.is_file() or marker.stat().st_mtime < (root / "package-lock.json").stat().st_mtime


def _run(argv: list[str], root: Path, timeout_s: float) -> bool:
    try:
        proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("dashboard: %s failed: %s", " ".join(argv), exc)
        return False
    if proc.returncode != 0:
        log.error("dashboard: %s exited %d:\n%s", " ".join(argv), proc.returncode, (proc.stdout + proc.stderr)[-4000:])
        return False
    return True


def ensure_built(root: Path = DASHBOARD_DIR) -> bool:
    """Build when stale; True when a current build is in place (the API will serve it)."""
    if not (root / "package.json").is_file():
        log.warning("dashboard: no %s; the API serves no dashboard", root / "package.json")
        return False
    if not is_stale(root):
        log.info("dashboard: %s is up to date", root / "dist")
        return True
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        built = (root / "dist" / "index.html").is_file()
        log.warning("dashboard: node and npm not found (install Node >= 20); skipping the build, so the API "
                    "serves %s", "the last build" if built else "no dashboard")
        return built
    if needs_install(root):
        log.info("dashboard: npm ci")
        if not _run([npm, "ci", "--no-audit", "--no-fund"], root, INSTALL_TIMEOUT_S):
            return False
    log.info("dashboard: npm run build")
    if not _run([npm, "run", "build"], root, BUILD_TIMEOUT_S):
        return False
    log.info("dashboard: built into %s", root / "dist")
    return True
