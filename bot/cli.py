"""`ecr-cost-bot`: each command is a few lines over the services."""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from .config import ConfigError, Settings, load_settings
from .core.analysis import AmbiguousOrUnknownName, find_repository
from .core.lifecycle import policy_status
from .core.models import ScanResult
from .core.render import (repository_detail_json, repository_detail_text, scan_csv, scan_json, scan_table)

PREVIOUS_PERIOD = timedelta(days=6)  # "last week" is the newest scan at least this much older


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 1."""


def _collector(settings: Settings, store, session_factory=None):
    from .aws import EcrCollector, default_session_factory

    return EcrCollector(session_factory or default_session_factory(), settings.regions, settings.role_arns, store)


def _scan(settings: Settings, store, session_factory=None, log=None) -> ScanResult:
    from .scan import run_scan

    started = time.perf_counter()
    collector = _collector(settings, store, session_factory)
    result = run_scan(collector, store, settings)
    print(f"scanned {len(result.repositories)} repositories in {time.perf_counter() - started:.1f} s: "
          f"{result.api_calls} API requests, {result.manifests_fetched} manifests fetched "
          f"(the others came from the cache)" + (" - PARTIAL, see errors" if result.partial else ""),
          file=log or sys.stderr)
    return result


def _print_scan(result: ScanResult, fmt: str, base_policy: dict) -> None:
    if fmt == "json":
        print(json.dumps(scan_json(result), indent=2))
    elif fmt == "csv":
        sys.stdout.write(scan_csv(result.repositories))
    else:
        print(scan_table(result, base_policy))
    if fmt != "table":
        for problem in result.errors:
            print(f"error: {problem.account_id} {problem.region}: {problem.message}", file=sys.stderr)


def cmd_scan(args, settings: Settings) -> int:
    from .store import Store

    store = Store(settings.db_path)
    try:
        result = _scan(settings, store)
    finally:
        store.close()
    _print_scan(result, args.format, settings.base_policy)
    return 1 if result.partial and not result.repositories else 0


def repository_detail(store, settings: Settings, name: str, fmt: str, refresh: bool = False) -> str:
    """The detail of one repository from the latest scan (scanning first when there is none)."""
    latest = None if refresh else store.latest_scan()
    if latest is None:
        latest = _scan(settings, store)
    try:
        row = find_repository(latest.repositories, name)
    except AmbiguousOrUnknownName as exc:
        hint = f"; did you mean: {', '.join(exc.candidates)}?" if exc.candidates else ""
        raise UserError(f"{exc}{hint}") from None
    position = latest.repositories.index(row) + 1
    earlier = store.latest_scan(before=latest.generated_at - PREVIOUS_PERIOD)
    previous = next((r for r in earlier.repositories if r.arn == row.arn), None) if earlier else None
    if fmt == "json":
        detail = repository_detail_json(row, position, len(latest.repositories), previous)
        detail["lifecycle_status"] = policy_status(row.lifecycle_policy, settings.base_policy)
        detail["scanned_at"] = latest.generated_at.isoformat()
        return json.dumps(detail, indent=2)
    return repository_detail_text(row, position, len(latest.repositories), previous,
                                  policy_status(row.lifecycle_policy, settings.base_policy))


def cmd_repo(args, settings: Settings) -> int:
    from .store import Store

    store = Store(settings.db_path)
    try:
        print(repository_detail(store, settings, args.name, args.format, args.refresh))
    finally:
        store.close()
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from .demo import run_demo

    return run_demo(settings, out=sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecr-cost-bot",
        description="Rank AWS ECR repositories by what they really store and cost. "
                    "Configuration comes from environment variables (see README).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser("scan", help="collect every repository now, store a snapshot, print the ranking")
    scan.add_argument("--format", choices=["table", "csv", "json"], default="table")
    scan.set_defaults(handler=cmd_scan)

    repo = commands.add_parser("repo", help="one repository's detail (what /ecr-cost NAME shows)")
    repo.add_argument("name", metavar="NAME", help="repository name, region/name, or repository ARN")
    repo.add_argument("--format", choices=["text", "json"], default="text")
    repo.add_argument("--refresh", action="store_true", help="scan first instead of using the latest snapshot")
    repo.set_defaults(handler=cmd_repo)

    demo = commands.add_parser("demo", help="the whole flow on an embedded sample registry (no AWS account needed)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return args.handler(args, settings)
    except ConfigError as exc:
        print(f"ecr-cost-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"ecr-cost-bot: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"ecr-cost-bot: cannot use the database {settings.db_path!r} (ECR_COST_DB): {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
