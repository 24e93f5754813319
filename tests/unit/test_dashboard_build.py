"""`make dev`'s dashboard build: when it is stale, when npm ci runs, and a machine without node."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from deploy.local import dashboard


def _project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    for name in ("package.json", "package-lock.json", "index.html", "src/main.tsx"):
        (root / name).write_text("x")
    return root


def _age(path: Path, seconds: float) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime - seconds, stat.st_mtime - seconds))


def test_a_build_is_stale_when_missing_or_older_than_a_source(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert dashboard.is_stale(root)
    (root / "dist").mkdir()
    (root / "dist" / "index.html").write_text("built")
    assert not dashboard.is_stale(root)
    _age(root / "dist" / "index.html", 60)
    assert dashboard.is_stale(root)  # src/main.tsx is newer than the build


def test_npm_ci_runs_only_when_the_lockfile_changed(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert dashboard.needs_install(root)
    (root / "node_modules").mkdir()
    (root / "node_modules" / ".package-lock.json").write_text("{}")
    assert not dashboard.needs_install(root)
    _age(root / "node_modules" / ".package-lock.json", 60)
    assert dashboard.needs_install(root)


def test_without_node_the_build_is_skipped_with_a_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = _project(tmp_path)
    monkeypatch.setattr("deploy.local.dashboard.shutil.which", lambda name: None)
    with caplog.at_level(logging.WARNING):
        assert dashboard.ensure_built(root) is False
    assert "node and npm not found" in caplog.text and "no dashboard" in caplog.text
