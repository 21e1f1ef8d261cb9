"""``promod``: the daemon and its offline tools.

    promod run [--config PATH]            run in the foreground (systemd runs this)
    promod check-config [--config PATH]   validate; every error with its key path; exit 1 on error
    promod init [DIR]                     write DIR/promod.toml and DIR/state for a first run
    promod db migrate|backup PATH|check   schema migrations, online backup, integrity check
    promod token create NAME --scopes a,b  a new HTTP API token and its [[http.tokens]] lines
    promod version

The config is ``--config``, else ``$PROMOD_CONFIG``, else ``/etc/promod/promod.toml``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from promod import __version__
from promod.config import Config, ConfigError, load_config, resolve_config_path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promod", description="promotion daemon")
    parser.add_argument("--version", action="version", version=f"promod {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c",
            "--config",
            help="config file (default: $PROMOD_CONFIG or /etc/promod/promod.toml)",
        )
        return p

    with_config(sub.add_parser("run", help="run the daemon in the foreground"))
    with_config(sub.add_parser("check-config", help="validate the config and exit"))
    init = sub.add_parser("init", help="write a sample config and state dir")
    init.add_argument("dir", nargs="?", default=".", help="target directory (default: .)")
    init.add_argument("--force", action="store_true", help="overwrite an existing promod.toml")
    init.add_argument(
        "--demo", action="store_true", help="also load demo customers, events and a campaign"
    )
    db = sub.add_parser("db", help="database tools")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="DBCOMMAND")
    with_config(dbsub.add_parser("migrate", help="apply pending schema migrations"))
    backup = with_config(dbsub.add_parser("backup", help="online backup to PATH"))
    backup.add_argument("path", help="destination file")
    with_config(dbsub.add_parser("check", help="integrity and foreign key check"))
    token = sub.add_parser("token", help="HTTP API bearer tokens")
    tokensub = token.add_subparsers(dest="token_command", required=True, metavar="TOKENCOMMAND")
    create = tokensub.add_parser(
        "create", help="make a token; print it once and the config lines to add"
    )
    create.add_argument("name", help="a name for the token (who uses it)")
    create.add_argument(
        "--scopes",
        required=True,
        help="comma-separated: customers:write, events:write, clearance, redeem, read",
    )
    sub.add_parser("version", help="print the version")
    return parser


def _load(arg: str | None, *, plugin_options: bool = True) -> tuple[Path, Config] | None:
    path = resolve_config_path(arg)
    try:
        return path, load_config(path, plugin_options=plugin_options)
    except ConfigError as exc:
        print(f"promod: {path}: configuration has {len(exc.issues)} error(s):", file=sys.stderr)
        for issue in exc.issues:
            where = issue.path or "(file)"
            print(f"  {where}: {issue.message}", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"promod {__version__}")
        return 0
    if args.command == "init":
        return _init(Path(args.dir), args.force, args.demo)
    if args.command == "token":
        return _token_create(args.name, args.scopes)
    # The database tools work without loading any plugin (a broken one must not stop
    # a backup); check-config and run check every channel and connector's options.
    loaded = _load(args.config, plugin_options=args.command != "db")
    if loaded is None:
        return 1
    path, config = loaded
    if args.command == "check-config":
        print(f"{path}: ok")
        return 0
    if args.command == "run":
        return _run(path, config)
    return _db(args, config)


def _init(target: Path, force: bool, demo: bool = False) -> int:
    from promod.initdir import init_directory

    try:
        written = init_directory(target, force=force)
    except FileExistsError as exc:
        print(f"promod: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {written}")
    if demo:
        from promod.demo import load_demo

        summary = load_demo(load_config(written))
        print(
            f"loaded {summary['customers']} demo customers, {summary['events']} events"
            f" and the draft campaign(s) {', '.join(summary['campaigns'])}"
        )
    print(f"start it with:  promod run --config {written}")
    return 0


def _token_create(name: str, scopes_text: str) -> int:
    import re

    from promod.http.auth import new_token

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
        print(f"promod: token name {name!r}: use letters, digits, '_' and '-'", file=sys.stderr)
        return 2
    scopes = [s.strip() for s in scopes_text.split(",") if s.strip()]
    try:
        token, lines = new_token(name, scopes)
    except ValueError as exc:
        print(f"promod: {exc}", file=sys.stderr)
        return 2
    print(f"token: {token}")
    print("(shown once; only its SHA-256 goes into the config)")
    print()
    print("add to promod.toml, then reload (systemctl reload promod):")
    print()
    print(lines, end="")
    return 0


def _run(path: Path, config: Config) -> int:
    import anyio

    from promod import logs
    from promod.daemon import serve

    logs.configure_logging(config.log.level, config.log.format)
    try:
        return anyio.run(serve, path, config)
    except KeyboardInterrupt:
        return 0


def _db(args: argparse.Namespace, config: Config) -> int:
    from promod.store.database import SchemaTooNew, backup_sync, check_sync, migrate_sync

    db_path = config.store.path
    try:
        if args.db_command == "migrate":
            applied = migrate_sync(db_path)
            print(f"{db_path}: applied {applied}" if applied else f"{db_path}: up to date")
            return 0
        if not db_path.exists():
            print(f"promod: no database at {db_path}", file=sys.stderr)
            return 1
        if args.db_command == "backup":
            backup_sync(db_path, Path(args.path))
            print(f"backed up {db_path} to {args.path}")
            return 0
        problems = check_sync(db_path)
        for problem in problems:
            print(problem)
        if problems:
            return 1
        print(f"{db_path}: ok")
        return 0
    except SchemaTooNew as exc:
        print(f"promod: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
