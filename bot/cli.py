"""`ecr-cost-bot`: argument parsing and printing only; every answer comes from the application layer."""
from __future__ import annotations

import argparse
import getpass
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings, load_settings
from .core.models import RepositoryCost, ScanResult
from .errors import (
    BotError,
    ConfigError,
    HandEdited,
    HarmsInUse,
    InUsePartial,
    PolicyOperationError,
    UsageError,
    UserError,
    describe,
)
from .format import iso, per_month, plural, size

if TYPE_CHECKING:  # boto3, sqlite-utils, matplotlib ...: imported by the commands that use them, not by --help
    from .application import Application


def scan_and_log(application: Application, log=None, now: datetime | None = None,
                 account: str | None = None) -> ScanResult:
    """A scan now (of the estate, or of ``account`` alone), with a line on stderr (or ``log``) saying what it cost."""
    started = time.perf_counter()
    result = application.scan(now) if account is None else application.scan_account(account, now)
    print(f"scanned {len(result.repositories)} repositories in {time.perf_counter() - started:.1f} s: "
          f"{result.api_calls} API requests, {result.manifests_fetched} manifests fetched "
          f"(the others came from the cache)" + (" - PARTIAL, see errors" if result.partial else ""),
          file=log or sys.stderr)
    return result


def recent_or_scan(application: Application) -> ScanResult:
    """The report's scan: a recent complete one (said on stderr), else a new one."""
    recent = application.recent_scan()
    if recent is None:
        return scan_and_log(application)
    minutes = (datetime.now(UTC) - recent.generated_at).total_seconds() / 60
    print(f"using the scan of {recent.generated_at:%Y-%m-%d %H:%M} UTC ({minutes:.0f} min old; a new one after "
          f"ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES={application.settings.report_scan_max_age_minutes:g})",
          file=sys.stderr)
    return recent


def print_scan(result: ScanResult, fmt: str, base_policy: dict, out=None) -> None:
    from .render.text import scan_csv, scan_json, scan_table

    out = out or sys.stdout
    if fmt == "json":
        print(json.dumps(scan_json(result), indent=2), file=out)
    elif fmt == "csv":
        out.write(scan_csv(result.repositories))
    else:
        print(scan_table(result, base_policy), file=out)
    if fmt != "table":
        for problem in result.errors:
            print(f"error: {problem.account_id} {problem.region}: {problem.message}", file=sys.stderr)


def resolve(application: Application, name: str, refresh: bool = False) -> tuple[ScanResult, RepositoryCost]:
    """The latest scan (scanning first when there is none, or with ``refresh``) and the repository NAME names."""
    scan = scan_and_log(application) if refresh else application.latest()
    return application.find(name, scan)  # AmbiguousOrUnknownName: main prints it with its candidates


def repository_detail(application: Application, name: str, fmt: str, refresh: bool = False) -> str:
    """What `repo NAME` prints: the detail of one repository from the latest scan."""
    from .render.text import repository_detail_json, view_text

    scan, row = resolve(application, name, refresh)
    view = application.view(scan, row)
    if fmt == "json":
        detail = repository_detail_json(row, view.rank, view.rank_of, view.previous, view.savings)
        detail["lifecycle_status"] = view.lifecycle_status
        detail["scanned_at"] = iso(scan.generated_at)
        return json.dumps(detail, indent=2)
    return view_text(view)


def _components(settings: Settings, args=None):
    """The object graph; a scan it runs shows its progress on stderr unless ``args.quiet``."""
    from .wiring import components

    if args is None or getattr(args, "quiet", True):
        return components(settings)
    return _showing_progress(components(settings), args.command)


@contextmanager
def _showing_progress(built_components, what: str):
    from .progress import StderrProgress

    with built_components as built:
        sink = StderrProgress(what)
        built.collector.progress = sink
        try:
            yield built
        finally:
            sink.close()


def cmd_scan(args, settings: Settings) -> int:
    with _components(settings, args) as built:
        # an account nobody knows is a typo (UnknownAccount): said before anything is scanned
        account_id = built.application.known_account(args.account) if args.account else None
        result = scan_and_log(built.application, account=account_id)  # that account alone, stored apart
    print_scan(result, args.format, settings.base_policy)
    return 0


def cmd_repo(args, settings: Settings) -> int:
    """`repo NAME` (the detail) or `repo delete NAME` (export, then delete an unused repository)."""
    if len(args.name) == 2 and args.name[0] == "delete":
        return repo_delete(args, settings, args.name[1])
    if args.name == ["delete"]:  # the sub-command without its NAME, never a repository called "delete"
        raise UsageError("repo delete takes the repository's NAME: ecr-cost-bot repo delete NAME --yes "
                         "(a repository named delete: ecr-cost-bot repo us-east-1/delete, region/name)")
    if len(args.name) != 1:
        raise UsageError("repo takes one NAME (or: repo delete NAME --yes)")
    if args.yes or args.force or args.export:
        raise UsageError("--yes, --force and --export go with `repo delete NAME`")
    with _components(settings) as built:
        print(repository_detail(built.application, args.name[0], args.format, args.refresh))
    return 0


def repo_delete(args, settings: Settings, name: str) -> int:
    from .wiring import cli_actor

    if not args.yes:
        raise UserError(f"repo delete removes {name} and every image in it from AWS: add --yes to confirm (an "
                        f"export is kept first; see `ecr-cost-bot repo {name}`)")
    export_path = Path(args.export) if args.export else None
    if export_path is not None and (export_path.is_dir() or not export_path.parent.is_dir()):
        raise UserError(f"cannot write the export to {args.export}: not a file in an existing directory")
    def deliver(export_id: int, content: str) -> None:  # written before the repository is deleted
        if export_path is not None:
            export_path.write_text(content)

    with _components(settings) as built:
        _, row = resolve(built.application, name)
        deletion = built.application.delete_repository(row, cli_actor(getpass.getuser()),
                                                       check_unused=not args.force, deliver=deliver)
    where = f"written to {export_path} and " if export_path is not None else ""
    print(f"deleted {row.repository} ({row.account_id} {row.region}): {plural(deletion.row.image_count, 'image')}, "
          f"{size(deletion.row.stored_bytes)}, {per_month(deletion.row.monthly_cost_usd)}; its export is "
          f"{where}kept in the database as export #{deletion.export_id} (decision #{deletion.decision.id})")
    return 0


def cmd_serve(args, settings: Settings) -> int:
    from .slack.server import serve

    return serve(settings)


def cmd_report(args, settings: Settings) -> int:
    """The report from a complete scan younger than ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES, else a new scan: printed,
    or posted (once per period) to the report channel."""
    from .jobs import period_start
    from .render.report import report_json, report_text

    if args.post:
        return _post_report(settings)
    with _components(settings, args) as built:
        scan = recent_or_scan(built.application)
        report = built.application.weekly_report(scan, period_start(settings, datetime.now(UTC)))
    print(json.dumps(report_json(report), indent=2) if args.format == "json" else report_text(report))
    return 0


def _post_report(settings: Settings) -> int:
    from .wiring import build_report_job, build_slack

    if not settings.slack_bot_token:
        raise ConfigError("SLACK_BOT_TOKEN: required for report --post")
    if not settings.report_channel:
        raise ConfigError("ECR_COST_REPORT_CHANNEL: required for report --post")
    with _components(settings) as built:
        built.collector.check_access()  # no account readable: one line and exit 1, not a report of zeros
        from .slack.app import check_slack, web_client

        client = web_client(settings)
        check_slack(settings, client)
        _, directory, client = build_slack(built, client)
        outcome = build_report_job(built, client, directory, scan_now=lambda: scan_and_log(built.application)).run()
    print(outcome)
    return 0 if "posted (ts" in outcome or "already posted" in outcome else 1


def cmd_demo(args, settings: Settings) -> int:
    from .demo import run_demo

    if args.port is not None and not args.keep:
        raise UsageError("--port goes with --keep")
    if not 1 <= (args.port or 4566) <= 65535:
        raise UsageError(f"--port: expected 1 to 65535, got {args.port}")
    return run_demo(settings, out=sys.stdout, folder=Path(args.out), keep=args.keep, port=args.port or 4566)


def _read_policy_file(path: str | None) -> str | None:
    if path is None:
        return None
    try:  # utf-8-sig: editors on Windows save a byte-order mark
        return sys.stdin.read().removeprefix("\ufeff") if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read policy file {path!r}: {exc}") from None


def cmd_policy_validate(args, settings: Settings) -> int:
    from .core.lifecycle import validate_policy

    policy, problems = validate_policy(_read_policy_file(args.file))
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    assert policy is not None  # no problems: a policy
    print(f"valid: ECR would accept this policy ({len(policy['rules'])} rules)")
    return 0


def cmd_policy_preview(args, settings: Settings) -> int:
    from .adoption import protection_note
    from .application import ref_of
    from .render.text import preview_json, preview_text

    text = _read_policy_file(args.policy)
    with _components(settings) as built:
        scan, row = resolve(built.application, args.repo)
        try:
            found = built.application.preview(row, text, scan=scan, fresh=args.refresh, who_may_pull=True)
        except PolicyOperationError as exc:
            if args.format == "json" and exc.problems:
                print(json.dumps(preview_json(ref_of(row), None, 0.0, exc.problems), indent=2))
                return 1
            raise
        archive = built.sweep.archive_note(scan, json.loads(found.policy_text))
        if args.format == "json":
            print(json.dumps(preview_json(found.ref, found.result, found.monthly_savings_usd, used=found.used,
                                          in_use=found.in_use, images=found.images, adopted=found.adopted,
                                          adopted_savings=found.adopted_savings_usd) | {"archive_note": archive},
                             indent=2))
        else:
            print(preview_text(found.ref, found.adopted or found.result, found.savings, found.source,
                               note=protection_note(found)))
            print(archive)
        if args.aws_preview:
            print(built.changes.aws_cross_check(found), file=sys.stderr)
    return 0


def _require_yes(args, what: str) -> None:
    if not args.yes:
        raise UserError(f"{what} changes the repository's lifecycle policy in AWS: add --yes to confirm "
                        f"(see `ecr-cost-bot policy preview {args.repo}` first)")


def cmd_policy_apply(args, settings: Settings) -> int:
    from .wiring import cli_actor

    _require_yes(args, "policy apply")
    text = _read_policy_file(args.policy)
    with _components(settings) as built:
        _, row = resolve(built.application, args.repo)
        change = built.application.adopt(row, cli_actor(getpass.getuser()), text,
                                         despite_partial=args.accept_partial_in_use, despite_in_use=args.force)
    decision = change.decision
    if decision is None:
        print(change.note)
        return 0
    print(f"adopted on {decision.repository} ({decision.account_id} {decision.region}); the previous policy "
          f"({'none' if decision.policy_before is None else 'backed up'}) can be restored with "
          f"`ecr-cost-bot policy rollback {args.repo} --yes`; projected savings "
          f"{per_month(decision.projected_monthly_savings_usd or 0.0)} (decision #{decision.id})")
    if change.note:
        print(change.note)
    return 0


def cmd_policy_rollback(args, settings: Settings) -> int:
    from .wiring import cli_actor

    _require_yes(args, "policy rollback")
    with _components(settings) as built:
        _, row = resolve(built.application, args.repo)
        try:
            change = built.application.rollback(row, cli_actor(getpass.getuser()), force=args.force,
                                                despite_in_use=args.force)
        except HandEdited as exc:
            print(f"ecr-cost-bot: {exc}", file=sys.stderr)
            print("--- in AWS now ---", file=sys.stderr)
            print(exc.live if exc.live is not None else "(no policy)", file=sys.stderr)
            print("--- what the bot last set ---", file=sys.stderr)
            print(exc.expected if exc.expected is not None else "(no policy)", file=sys.stderr)
            print("add --force to back up the policy in AWS and roll back anyway", file=sys.stderr)
            return 1
    decision = change.decision
    if decision is None:
        print(f"ecr-cost-bot: {change.note}", file=sys.stderr)
        return 1
    restored = "deleted the policy (there was none before)" if decision.policy_after is None \
        else "restored the previous policy exactly"
    print(f"rolled back {decision.repository} ({decision.account_id} {decision.region}): {restored} "
          f"(decision #{decision.id}, undoing #{decision.undoes})")
    if change.note:
        print(change.note)
    return 0


def cmd_in_use(args, settings: Settings) -> int:
    from .render.text import in_use_json, in_use_table

    with _components(settings) as built:
        items, found = built.application.in_use_images(args.repo, fresh=True)
    if args.format == "json":
        print(json.dumps([{"repository": i.row.repository, "account_id": i.row.account_id, "region": i.row.region,
                           **in_use_json(i.digest, i.tags, i.used_by)} for i in items], indent=2))
    else:
        print(in_use_table(items))
    for problem in found.problems:
        print(f"warning: in-use check partial: {problem.source} in {problem.account_id} {problem.region}: "
              f"{problem.message}", file=sys.stderr)
    return 0


def cmd_guard(args, settings: Settings) -> int:
    from .render.text import guard_json, guard_table

    with _components(settings) as built:
        result = built.application.guard()
    print(json.dumps(guard_json(result), indent=2) if args.format == "json" else guard_table(result))
    return 0


def cmd_size(args, settings: Settings) -> int:
    from .render.text import size_json, size_text

    with _components(settings) as built:
        scan, row = resolve(built.application, args.name)
        report = built.application.size(scan, row)
        label = built.application.labels(scan).get(row.arn)
    print(json.dumps(size_json(report), indent=2) if args.format == "json" else size_text(report, label))
    return 0


def cmd_billing(args, settings: Settings) -> int:
    """Billed cost per repository from the CUR (a Parquet export or Athena) beside the estimate."""
    from .render.text import cur_billing_json, cur_billing_table

    if args.days < 1 or args.days > 400:
        raise UsageError(f"--days: expected 1 to 400, got {args.days}")
    with _components(settings) as built:
        found = built.application.billing(args.days)
    print(json.dumps(cur_billing_json(found), indent=2) if args.format == "json" else cur_billing_table(found))
    for note in found.notes:
        print(f"warning: {note}", file=sys.stderr)
    return 0


def cmd_health(args, settings: Settings) -> int:
    """For a container's HEALTHCHECK: exit 0 when the `serve` using this database is alive."""
    from .health import check

    healthy, why = check(settings)
    print(why, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def cmd_doctor(args, settings: Settings) -> int:
    """Checks the setup end to end: one line per check with its fix; exit 0 when none failed."""
    from .doctor import doctor_json, doctor_table, passed, run_checks

    results = run_checks(settings)
    print(doctor_json(results) if args.format == "json" else doctor_table(results))
    return 0 if passed(results) else 1


def cmd_decisions(args, settings: Settings) -> int:
    from .render.text import decision_json, decisions_table

    with _components(settings) as built:
        decisions = built.application.decision_log()
    print(json.dumps([decision_json(d) for d in decisions], indent=2) if args.format == "json"
          else decisions_table(decisions))
    return 0


def cmd_watch(args, settings: Settings) -> int:
    """Growth since the previous scan, limits, new repositories without a policy, policies that expire nothing."""
    from .render.watch import watch_json, watch_text
    from .wiring import build_slack, build_watch_job, build_watch_notifier

    if args.post and not settings.slack_bot_token:
        raise ConfigError("SLACK_BOT_TOKEN: required for watch --post")
    with _components(settings) as built:
        result = built.watch.watch()
        if args.post:
            _, directory, client = build_slack(built)
            period = build_watch_job(built, client, directory).current_period()  # the daily job's: once per period
            outcome = build_watch_notifier(built, client, directory).post(result, period)
    print(json.dumps(watch_json(result), indent=2) if args.format == "json" else watch_text(result))
    if args.post:
        print(outcome, file=sys.stderr)
    return 0


def cmd_templates(args, settings: Settings) -> int:
    """Repository creation templates per account and region; `apply --yes` / `rollback --yes` the ROOT one."""
    from .render.watch import template_changes_text, templates_json, templates_text
    from .wiring import cli_actor

    if args.action and not args.yes:
        raise UserError(f"templates {args.action} changes the ROOT repository creation template of every account "
                        f"and region: add --yes to confirm (each is backed up first)")
    if args.yes and not args.action:
        raise UsageError("--yes goes with `templates apply` or `templates rollback`")
    with _components(settings) as built:
        if args.action is None:
            listing = built.templates.listing()
            print(json.dumps(templates_json(listing), indent=2) if args.format == "json" else templates_text(listing))
            return 0
        actor = cli_actor(getpass.getuser())
        changes = built.templates.apply(actor) if args.action == "apply" else built.templates.rollback(actor)
    print(template_changes_text(changes))
    return 1 if any(c.outcome in ("failed", "refused") for c in changes) else 0


# every command that prints data takes --format table|json (scan also csv); `text` is still read as `table`
FORMATS = ["table", "json", "text"]
FORMAT_HELP = "table (for people, the default) or json (the stable contract)"


# shown under each command's --help: what a person types first
EXAMPLES = {
    "serve": ["ecr-cost-bot serve", "SLACK_APP_TOKEN=xapp-... ecr-cost-bot serve   # Socket Mode"],
    "scan": ["ecr-cost-bot scan", "ecr-cost-bot scan --format csv > ecr.csv", "ecr-cost-bot scan --account team-a"],
    "repo": ["ecr-cost-bot repo payments-api", "ecr-cost-bot repo eu-west-1/payments-api --format json",
             "ecr-cost-bot repo delete old-prototype --export old.json --yes"],
    "policy validate": ["ecr-cost-bot policy validate my-policy.json", "cat my-policy.json | ecr-cost-bot policy "
                        "validate -"],
    "policy preview": ["ecr-cost-bot policy preview payments-api", "ecr-cost-bot policy preview payments-api "
                       "--policy my-policy.json --format json"],
    "policy apply": ["ecr-cost-bot policy apply payments-api --yes", "ecr-cost-bot policy apply payments-api "
                     "--policy my-policy.json --yes"],
    "policy rollback": ["ecr-cost-bot policy rollback payments-api --yes"],
    "decisions": ["ecr-cost-bot decisions", "ecr-cost-bot decisions --format json > decisions.json"],
    "in-use": ["ecr-cost-bot in-use", "ecr-cost-bot in-use payments-api --format json"],
    "guard": ["ecr-cost-bot guard", "ecr-cost-bot guard --format json"],
    "size": ["ecr-cost-bot size ml/training-gpu"],
    "billing": ["ecr-cost-bot billing", "ecr-cost-bot billing --days 7 --format json"],
    "sweep": ["ecr-cost-bot sweep enable ci-builds --days 30", "ecr-cost-bot sweep --dry-run",
              "ecr-cost-bot sweep disable ci-builds"],
    "report": ["ecr-cost-bot report", "ecr-cost-bot report --post"],
    "watch": ["ecr-cost-bot watch", "ecr-cost-bot watch --post"],
    "templates": ["ecr-cost-bot templates", "ecr-cost-bot templates apply --yes"],
    "health": ["ecr-cost-bot health   # a container's HEALTHCHECK"],
    "doctor": ["ecr-cost-bot doctor", "ecr-cost-bot doctor --format json"],
    "demo": ["ecr-cost-bot demo", "ecr-cost-bot demo --keep --port 4566"],
}


def _describe(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Every command's --help: its one-line help as the description, and its examples."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        return
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    for name, child in sub.choices.items():
        command = f"{path} {name}".strip()
        child.description = child.description or helps.get(name)
        child.formatter_class = argparse.RawDescriptionHelpFormatter
        if command in EXAMPLES:
            child.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])
        _describe(child, command)


def _quiet_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true",
                        help="no progress on stderr (a bar on a terminal, else a line every 10 s)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ecr-cost-bot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"




def cmd_sweep(args, settings: Settings) -> int:
    """`sweep` (announce, then delete after the grace period), `sweep enable NAME --days N`, `sweep disable NAME`."""
    from .application import ref_of
    from .jobs import sweep_announcer
    from .render.text import sweep_table
    from .wiring import build_slack, cli_actor

    action, names = (args.words[0], args.words[1:]) if args.words else (None, [])
    if action not in (None, "enable", "disable") or len(names) != (0 if action is None else 1):
        raise UsageError("sweep takes no NAME (or: sweep enable NAME --days N, sweep disable NAME)")
    if action == "enable" and args.days is None:
        raise UsageError("sweep enable NAME needs --days N (1 to 3650): images nobody pulled for N days are swept")
    if action != "enable" and args.days is not None or action and args.dry_run:
        raise UsageError("--days goes with `sweep enable`, --dry-run with `sweep` alone")
    with _components(settings) as built:
        if action is not None:
            _, row = resolve(built.application, names[0])
            actor = cli_actor(getpass.getuser())
            change = built.sweep.enable(ref_of(row), args.days, actor) if action == "enable" else \
                built.sweep.disable(ref_of(row), actor)
            print(change.note if change.decision is None else f"{change.decision.note} on {row.repository} "
                  f"({row.account_id} {row.region}) (decision #{change.decision.id})")
            return 0
        announce = None
        if settings.slack_bot_token:  # the grace period exists so that owners are told: the CLI tells them too
            _, directory, client = build_slack(built)
            announce = sweep_announcer(client, directory.owner_ids)
        run = built.sweep.run(dry_run=args.dry_run, announce=announce, user_id=getpass.getuser(), source="cli")
    print(json.dumps(run.as_json(), indent=2) if args.format == "json" else sweep_table(run, told=announce is not None))
    if args.format == "json" and announce is None and not args.dry_run and any(r.announced for r in run.repositories):
        print("warning: owners NOT told (no SLACK_BOT_TOKEN): the announcements are recorded, the images deleted "
              "after the grace period all the same", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecr-cost-bot",
        description="Rank AWS ECR repositories by what they really store and cost. "
                    "Configuration comes from environment variables (see README).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the Slack app (Socket Mode when SLACK_APP_TOKEN is set, else "
                                               "HTTP on PORT) and the weekly scheduler")
    serve.set_defaults(handler=cmd_serve)

    scan = commands.add_parser("scan", help="collect every repository now, store a snapshot, print the ranking")
    scan.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _quiet_flag(scan)
    scan.add_argument("--account", metavar="ID", help="scan only this account (its ID or its name in the "
                                                     "organisation), every region; stored apart, the report and "
                                                     "`repo` keep using the latest full scan")
    scan.set_defaults(handler=cmd_scan)

    repo = commands.add_parser("repo", help="one repository's detail (what /ecr-cost NAME shows); `repo delete "
                                             "NAME --yes` exports then deletes an unused repository",
                               usage="%(prog)s NAME [--format table|json] [--refresh]\n"
                                     "       %(prog)s delete NAME [--export FILE] --yes [--force]")
    repo.add_argument("name", metavar="NAME", nargs="+", help="repository name, region/name, or repository ARN; "
                                                             "or `delete NAME`")
    repo.add_argument("--format", choices=FORMATS, default="table", help=FORMAT_HELP)
    repo.add_argument("--refresh", action="store_true", help="scan first instead of using the latest snapshot")
    repo.add_argument("--export", metavar="FILE", help="repo delete: also write the export (every image's digest, "
                                                       "tags, times and manifest) to FILE")
    repo.add_argument("--yes", action="store_true", help="repo delete: confirm the deletion")
    repo.add_argument("--force", action="store_true", help="repo delete: skip the unused check (never the in-use "
                                                           "check)")
    repo.set_defaults(handler=cmd_repo)

    policy = commands.add_parser("policy", help="lifecycle policies: validate, preview, apply, roll back")
    actions = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="exit 0 when ECR would accept the policy, else list the problems")
    validate.add_argument("file", metavar="FILE", help="policy JSON file, or - for standard input")
    validate.set_defaults(handler=cmd_policy_validate)

    preview = actions.add_parser("preview", help="which images a policy would expire, and the bytes and USD freed")
    preview.add_argument("repo", metavar="REPO", help="repository name, region/name, or ARN")
    preview.add_argument("--policy", metavar="FILE", help="policy JSON file (default: the base policy)")
    preview.add_argument("--format", choices=["table", "json"], default="table")
    preview.add_argument("--refresh", action="store_true", help="read the repository now, not from the latest scan")
    preview.add_argument("--aws-preview", action="store_true",
                         help="also ask AWS's own (slow, asynchronous) preview and compare")
    preview.set_defaults(handler=cmd_policy_preview)

    apply = actions.add_parser("apply", help="back up the current policy, put the new one, record the decision")
    apply.add_argument("repo", metavar="REPO")
    apply.add_argument("--policy", metavar="FILE", help="policy JSON file (default: the base policy)")
    apply.add_argument("--yes", action="store_true", help="confirm the change")
    apply.add_argument("--accept-partial-in-use", action="store_true",
                       help="adopt even when some runtime (ECS, Lambda, Kubernetes) could not be read: images "
                            "running there are not protected")
    apply.add_argument("--force", action="store_true",
                       help="put the policy even though it would expire or archive images in use (named first)")
    apply.set_defaults(handler=cmd_policy_apply)

    rollback = actions.add_parser("rollback", help="undo the latest adoption not yet undone: restore the policy it "
                                                   "replaced (repeat to walk back to the original)")
    rollback.add_argument("repo", metavar="REPO")
    rollback.add_argument("--yes", action="store_true", help="confirm the change")
    rollback.add_argument("--force", action="store_true",
                          help="roll back even over a policy edited by hand since the bot set it (backed up "
                               "first), or when the restored policy would expire images in use (it names them)")
    rollback.set_defaults(handler=cmd_policy_rollback)

    decisions = commands.add_parser("decisions", help="the decision log: adoptions, rollbacks, declines, snoozes")
    decisions.add_argument("--format", choices=["table", "json"], default="table")
    decisions.set_defaults(handler=cmd_decisions)

    in_use = commands.add_parser("in-use", help="every image that runs somewhere (ECS, Lambda, Kubernetes, recent "
                                                "pulls) and where")
    in_use.add_argument("repo", metavar="REPO", nargs="?", help="only this repository (name, region/name or ARN)")
    in_use.add_argument("--format", choices=["table", "json"], default="table")
    in_use.set_defaults(handler=cmd_in_use)

    guard = commands.add_parser("guard", help="in-use images that a repository's current policy would expire; "
                                              "refreshes the protection of policies the bot adopted")
    guard.add_argument("--format", choices=["table", "json"], default="table")
    guard.set_defaults(handler=cmd_guard)

    size = commands.add_parser("size", help="why a repository is big: largest images and layers, churn per push, "
                                            "the base it is built on, advice ranked by USD/month")
    size.add_argument("name", metavar="NAME", help="repository name, region/name, or repository ARN")
    size.add_argument("--format", choices=FORMATS, default="table", help=FORMAT_HELP)
    size.set_defaults(handler=cmd_size)

    billing = commands.add_parser("billing", help="billed cost per repository from the CUR (ECR_COST_CUR or "
                                                  "ECR_COST_CUR_ATHENA) beside the estimate")
    billing.add_argument("--days", type=int, default=30, help="the complete UTC days ending yesterday (default 30)")
    billing.add_argument("--format", choices=["table", "json"], default="table")
    billing.set_defaults(handler=cmd_billing)

    sweep = commands.add_parser("sweep", help="announce, then after the grace period delete, images nobody pulled "
                                              "for N days in opted-in repositories; `sweep enable NAME --days N`, "
                                              "`sweep disable NAME` set or remove the opt-in",
                                usage="%(prog)s [--dry-run] [--format table|json]\n"
                                      "       %(prog)s enable NAME --days N\n       %(prog)s disable NAME")
    sweep.add_argument("words", metavar="enable|disable NAME", nargs="*", help="set or remove a repository's opt-in")
    sweep.add_argument("--days", type=int, help="sweep enable: delete images nobody pulled for N days (1 to 3650)")
    sweep.add_argument("--dry-run", action="store_true", help="say what would be announced and deleted; change "
                                                              "nothing, tell nobody")
    sweep.add_argument("--format", choices=["table", "json"], default="table")
    sweep.set_defaults(handler=cmd_sweep)

    report = commands.add_parser("report", help="the weekly report from a recent or a new scan: printed, or posted")
    report.add_argument("--post", action="store_true",
                        help="post it with its chart to ECR_COST_REPORT_CHANNEL (once per period)")
    report.add_argument("--format", choices=FORMATS, default="table", help=FORMAT_HELP)
    _quiet_flag(report)
    report.set_defaults(handler=cmd_report)

    watch = commands.add_parser("watch", help="growth since the previous scan, repositories over their limit, new "
                                              "repositories without a policy, policies that expire nothing")
    watch.add_argument("--post", action="store_true", help="one direct message per owner (admins for unowned), "
                                                           "each finding once per period; over-limit summary to the "
                                                           "report channel")
    watch.add_argument("--format", choices=["table", "json"], default="table")
    watch.set_defaults(handler=cmd_watch)

    templates = commands.add_parser("templates", help="repository creation templates per account and region; "
                                                      "`apply --yes` puts the base policy in the ROOT template, "
                                                      "`rollback --yes` undoes it",
                                    usage="%(prog)s [--format table|json]\n       %(prog)s apply --yes\n"
                                          "       %(prog)s rollback --yes")
    templates.add_argument("action", nargs="?", choices=["apply", "rollback"], metavar="apply|rollback")
    templates.add_argument("--yes", action="store_true", help="confirm the change")
    templates.add_argument("--format", choices=["table", "json"], default="table")
    templates.set_defaults(handler=cmd_templates)

    health = commands.add_parser("health", help="exit 0 when the `serve` using this ECR_COST_DB is alive (its "
                                                "heartbeat, its Socket Mode connection, GET /healthz in HTTP mode)")
    health.set_defaults(handler=cmd_health)

    doctor = commands.add_parser("doctor", help="check the setup end to end (AWS identity, accounts, IAM, Slack "
                                                "token, scopes, channel, database, billing sources): one line per "
                                                "check with its fix; exit 0 when none failed")
    doctor.add_argument("--format", choices=["table", "json"], default="table")
    doctor.set_defaults(handler=cmd_doctor)

    demo = commands.add_parser("demo", help="the whole flow on an embedded sample registry (no AWS account needed)")
    demo.add_argument("--out", metavar="DIR", default="ecr-cost-demo",
                      help="where the report's Block Kit JSON and chart PNG are written (default: ecr-cost-demo)")
    demo.add_argument("--keep", action="store_true",
                      help="after the story, keep the sample registry running (a moto server) and print the "
                           "`export` lines with which every command, and serve, work on it; Ctrl-C stops it")
    demo.add_argument("--port", type=int, metavar="N", help="with --keep: the sample registry's port (default 4566)")
    demo.set_defaults(handler=cmd_demo)
    _describe(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    created: Path | None = None
    code = 1
    try:
        settings = load_settings()
        created = None if Path(settings.db_path).exists() else Path(settings.db_path)
        with _database_in_use(settings.db_path) as in_use:
            code = args.handler(args, settings)
            if created is not None and (code != 0 or _empty(created)):  # failed, or never used it
                _remove_new_database(created, in_use)
            created = None
        return code
    except BotError as exc:  # one line (a refused change: its problems and how to go ahead, indented below it)
        print(f"ecr-cost-bot: {describe(exc)}", file=sys.stderr)
        for line in _details(exc):
            print(f"  {line}", file=sys.stderr)
        return 2 if isinstance(exc, (ConfigError, UsageError)) else 1
    except sqlite3.Error as exc:
        print(f"ecr-cost-bot: cannot use the database {settings.db_path!r} (ECR_COST_DB): {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if created is not None:  # the handler raised: the error was printed above
            with _database_in_use(str(created)) as in_use:
                _remove_new_database(created, in_use)


def _details(exc: BotError) -> list[str]:
    """What follows a refused change's line: its problems, and the flag that goes ahead anyway."""
    if not isinstance(exc, PolicyOperationError):
        return []
    found = list(exc.problems)
    if isinstance(exc, InUsePartial):
        found.append("add --accept-partial-in-use to adopt anyway (images running there are not protected)")
    if isinstance(exc, HarmsInUse):
        found.append("add --force to put it anyway: these running images would be expired or archived")
    return found


@contextmanager
def _database_in_use(db_path: str) -> Iterator[Callable[[], bool]]:
    """Holds a shared flock on the database file while the command runs (SQLite's own locks are fcntl locks,
    independent of these). Yields ``alone()``: True when no other ecr-cost-bot process holds the file."""
    if db_path == ":memory:" or db_path.startswith("file:"):  # not a file of ours to lock or remove
        yield lambda: False
        return
    try:
        import fcntl
        # an empty file is a new SQLite database; closed by `with handle` below
        handle = open(db_path, "ab")  # noqa: SIM115
    except (ImportError, OSError):  # no flock here, or the path is not writable: the Store will say so
        yield lambda: False
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_SH)

        def alone() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:
                return False

        yield alone


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _remove_new_database(path: Path, alone: Callable[[], bool]) -> None:
    """A command that failed leaves no database it created (a typo must not leave ecr-cost.db behind), unless
    something was written to it (a stored scan or decision is never thrown away) or another process uses it."""
    if not alone():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = [name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")
                      if not name.startswith(("_", "sqlite_"))]
            kept = {"scans": "where status in ('complete', 'account')"}  # a scan that failed on its way holds nothing
            if any(conn.execute(f'select 1 from "{name}" {kept.get(name, "")} limit 1').fetchone()
                   for name in tables):
                return
    except sqlite3.Error:
        return  # not ours to judge: leave it
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal"),
                     Path(f"{path}-init.lock")):
        leftover.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
