"""`python -m deploy.keys`: create API keys in Postgres (DATABASE_URL) from a shell or a one-shot container.

    python -m deploy.keys create --tenant default --all-scopes      # prints a new key on stdout
    python -m deploy.keys ensure --tenant default --all-scopes --file .conveyor/compose-admin-key

`ensure` is idempotent (docker-compose's `init` runs it on every `up`): it registers the key in
CONVEYOR_API_KEY when that is set, else keeps the live key already in `--file`, else creates one
and writes it there (mode 0600). `--migrate` applies the schema migrations first.
`--webhook-secret-file` also writes the tenant's webhook signing secret there (created if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import asyncpg

from shared.auth.keys import create_api_key, ensure_key, register_api_key, resolve_key
from shared.auth.principal import ALL_SCOPES, Principal, Scope
from shared.db.migrate import apply_migrations
from shared.settings import DEFAULT_DATABASE_URL
from shared.webhooks import ensure_secret_at

log = logging.getLogger("deploy.keys")

KEY_ENV = "CONVEYOR_API_KEY"


class KeyCommandError(RuntimeError):
    """The key cannot be created or registered; the message says why."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy.keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what in (("create", "create a new key and print it"),
                       ("ensure", f"register ${KEY_ENV}, or keep the key in --file, or create one there")):
        command = commands.add_parser(name, help=what)
        command.add_argument("--tenant", default="default", help="the tenant the key acts for (default: default)")
        scopes = command.add_mutually_exclusive_group(required=True)
        scopes.add_argument("--all-scopes", action="store_true", help="every scope: " + ", ".join(sorted(ALL_SCOPES)))
        scopes.add_argument("--scope", action="append", choices=sorted(ALL_SCOPES), help="a scope (repeatable)")
        command.add_argument("--name", default=None, help="a label stored with the key (default: <tenant>-<command>)")
        command.add_argument("--migrate", action="store_true", help="apply the schema migrations first")
        if name == "ensure":
            command.add_argument("--file", type=Path, required=True, help="where the key is kept (mode 0600)")
            command.add_argument("--webhook-secret-file", type=Path, default=None,
                                 help="also write the tenant's webhook signing secret here (mode 0600)")
    return parser


async def create(dsn: str, tenant: str, scopes: frozenset[Scope], name: str) -> str:
    """A new key of `tenant` with `scopes`; its plaintext."""
    conn = await asyncpg.connect(dsn, timeout=10, command_timeout=10)
    try:
        return await create_api_key(conn, tenant, scopes, name)
    finally:
        await conn.close(timeout=5)


async def register(dsn: str, tenant: str, scopes: frozenset[Scope], name: str, given: str) -> None:
    """Register an operator's key (a no-op if it is already theirs with these scopes)."""
    conn = await asyncpg.connect(dsn, timeout=10, command_timeout=10)
    try:
        found = await resolve_key(conn, given)
        if found is None:
            try:
                await register_api_key(conn, given, tenant, scopes, name)
            except ValueError as exc:
                raise KeyCommandError(f"{KEY_ENV}: {exc}") from None
        elif found != Principal(tenant, scopes):
            raise KeyCommandError(f"{KEY_ENV} is already a key of tenant {found.tenant!r} with scopes "
                                  f"{sorted(found.scopes)}, not the ones asked for")
    finally:
        await conn.close(timeout=5)


async def ensure(dsn: str, tenant: str, scopes: frozenset[Scope], name: str, existing: str | None) -> str:
    """`existing` if it is still a live key of `tenant` with `scopes`, else a new one."""
    conn = await asyncpg.connect(dsn, timeout=10, command_timeout=10)
    try:
        return await ensure_key(conn, existing, tenant, scopes, name)
    finally:
        await conn.close(timeout=5)


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path`, readable by its owner only; atomic (readers never see half a file).

    As root (a container writing into a bind mount), the file goes to the owner of its folder,
    so the developer who made the folder can read it without sudo.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(value)
    tmp.chmod(0o600)
    if os.geteuid() == 0:
        folder = path.parent.stat()
        os.chown(tmp, folder.st_uid, folder.st_gid)
    tmp.replace(path)


async def _run(args: argparse.Namespace) -> int:
    dsn = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    scopes = ALL_SCOPES if args.all_scopes else frozenset(Scope(s) for s in args.scope)
    name = args.name or f"{args.tenant}-{args.command}"
    if args.migrate:
        applied = await apply_migrations(dsn)
        log.info("database ready (%d migrations applied now)", len(applied))
    what = f"tenant {args.tenant}, scopes {', '.join(sorted(scopes))}"
    given = os.environ.get(KEY_ENV) or None
    if args.command == "create":
        print(await create(dsn, args.tenant, scopes, name), flush=True)
    elif given:
        await register(dsn, args.tenant, scopes, name, given)
        log.info("the key in $%s is registered (%s)", KEY_ENV, what)
    else:
        file: Path = args.file
        existing = file.read_text().strip() if file.exists() else None  # noqa: ASYNC240 (a one-shot CLI)
        key = await ensure(dsn, args.tenant, scopes, name, existing)
        if key == existing:
            log.info("the key in %s is live (%s)", file, what)
        else:
            write_secret(file, key + "\n")
            log.info("a new key (%s) is in %s", what, file)
    if args.command == "ensure" and args.webhook_secret_file is not None:
        write_secret(args.webhook_secret_file, await ensure_secret_at(dsn, args.tenant) + "\n")
        log.info("the webhook secret of tenant %s is in %s", args.tenant, args.webhook_secret_file)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; the key goes to stdout (`create`) or to `--file` (`ensure`), messages to stderr."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        return asyncio.run(_run(args))
    except (KeyCommandError, OSError, asyncpg.PostgresError) as exc:
        log.error("deploy.keys: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
