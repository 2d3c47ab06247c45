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
from dataclasses import dataclass
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
    from .scans import ScanService


def scan_and_log(scans: Application | ScanService, log=None, now: datetime | None = None,
                 account: str | None = None) -> ScanResult:
    """A scan now (of the estate, or of ``account`` alone), with a line on stderr (or ``log``) saying what it cost."""
    started = time.perf_counter()
    result = scans.scan(now) if account is None else scans.scan_account(account, now)
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
        # written as it is encoded, each repository's document made as it is written: never held as one string
        json.dump(scan_json(result, streamed=True), out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        scan_csv(result.repositories, out)
    else:
        print(scan_table(result, base_policy), file=out)
    if fmt != "table":
        for problem in result.errors:
            print(f"error: {problem.account_id} {problem.region}: {problem.message}", file=sys.stderr)


def emit(fmt: str, document: Callable[[], dict | list], table: Callable[[], str]) -> None:
    """What a data command prints: the table for people, the JSON contract, or that JSON as one CSV table (what it
    reports as errors or warnings then goes to stderr)."""
    if fmt == "json":
        print(json.dumps(document(), indent=2))
    elif fmt == "csv":
        from .render.text import document_csv

        text, notes = document_csv(document())
        sys.stdout.write(text)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
    else:
        print(table())


def resolve(application: Application, name: str, refresh: bool = False) -> tuple[ScanResult, RepositoryCost]:
    """The latest scan (scanning first when there is none, or with ``refresh``) and the repository NAME names."""
    scan = scan_and_log(application) if refresh else application.latest()
    return application.find(name, scan)  # AmbiguousOrUnknownName: main prints it with its candidates


def repository_detail(application: Application, name: str, fmt: str, refresh: bool = False) -> None:
    """Prints what `repo NAME` shows: the detail of one repository from the latest scan."""
    from .render.text import repository_detail_json, view_text

    scan, row = resolve(application, name, refresh)
    view = application.view(scan, row)

    def detail() -> dict:
        found = repository_detail_json(row, view.rank, view.rank_of, view.previous, view.savings)
        return found | {"lifecycle_status": view.lifecycle_status, "scanned_at": iso(scan.generated_at)}

    emit(fmt, detail, lambda: view_text(view))


def _components(settings: Settings, args=None, lean: bool = False):
    """The object graph (``lean``: only what a scan needs); a scan it runs shows its progress on stderr unless
    ``args.quiet``."""
    from .wiring import components, scanning

    built = scanning(settings) if lean else components(settings)
    if args is None or getattr(args, "quiet", True):
        return built
    return _showing_progress(built, args.command)


@contextmanager
def _showing_progress(built_components, what: str):
    """The scan's progress (its collector's), and the other long work's (runtimes, the CUR, image configs)."""
    from .progress import StderrProgress, showing

    with built_components as built:
        sink = StderrProgress(what)
        built.collector.progress = sink
        try:
            with showing(sink):
                yield built
        finally:
            sink.close()


def cmd_scan(args, settings: Settings) -> int:
    with _components(settings, args, lean=True) as built:
        # an account nobody knows is a typo (UnknownAccount): said before anything is scanned
        account_id = built.lookups.known_account(args.account) if args.account else None
        result = scan_and_log(built.scans, account=account_id)  # that account alone, stored apart
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
        repository_detail(built.application, args.name[0], args.format, args.refresh)
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
    emit(args.format, lambda: report_json(report), lambda: report_text(report))
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
            problems = exc.problems
            if args.format != "table" and problems:
                emit(args.format, lambda: preview_json(ref_of(row), None, 0.0, problems), str)
                return 1
            raise
        archive = built.sweep.archive_note(scan, json.loads(found.policy_text))
        if args.format != "table":
            emit(args.format, lambda: preview_json(
                found.ref, found.result, found.monthly_savings_usd, used=found.used, in_use=found.in_use,
                images=found.images, adopted=found.adopted, adopted_savings=found.adopted_savings_usd) | {
                "archive_note": archive}, str)
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

    with _components(settings, args) as built:
        items, found = built.application.in_use_images(args.repo, fresh=True)
    emit(args.format, lambda: [{"repository": i.row.repository, "account_id": i.row.account_id, "region": i.row.region,
                                **in_use_json(i.digest, i.tags, i.used_by)} for i in items],
         lambda: in_use_table(items))
    for problem in found.problems:
        print(f"warning: in-use check partial: {problem.source} in {problem.account_id} {problem.region}: "
              f"{problem.message}", file=sys.stderr)
    return 0


def cmd_guard(args, settings: Settings) -> int:
    from .render.text import guard_json, guard_table

    with _components(settings, args) as built:
        result = built.application.guard()
    emit(args.format, lambda: guard_json(result), lambda: guard_table(result))
    return 0


def cmd_size(args, settings: Settings) -> int:
    from .render.text import size_json, size_text

    with _components(settings, args) as built:
        scan, row = resolve(built.application, args.name)
        report = built.application.size(scan, row)
        label = built.application.labels(scan).get(row.arn)
    emit(args.format, lambda: size_json(report), lambda: size_text(report, label))
    return 0


def cmd_billing(args, settings: Settings) -> int:
    """Billed cost per repository from the CUR (a Parquet export or Athena) beside the estimate."""
    from .render.text import cur_billing_json, cur_billing_table

    if args.days < 1 or args.days > 400:
        raise UsageError(f"--days: expected 1 to 400, got {args.days}")
    with _components(settings, args) as built:
        found = built.application.billing(args.days)
    emit(args.format, lambda: cur_billing_json(found), lambda: cur_billing_table(found))
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
    emit(args.format, lambda: doctor_json(results), lambda: doctor_table(results))
    return 0 if passed(results) else 1


def cmd_decisions(args, settings: Settings) -> int:
    from .render.text import decision_json, decisions_table

    with _components(settings) as built:
        decisions = built.application.decision_log()
    emit(args.format, lambda: [decision_json(d) for d in decisions], lambda: decisions_table(decisions))
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
    emit(args.format, lambda: watch_json(result), lambda: watch_text(result))
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
            emit(args.format, lambda: templates_json(listing), lambda: templates_text(listing))
            return 0
        actor = cli_actor(getpass.getuser())
        changes = built.templates.apply(actor) if args.action == "apply" else built.templates.rollback(actor)
    print(template_changes_text(changes))
    return 1 if any(c.outcome in ("failed", "refused") for c in changes) else 0


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
    emit(args.format, run.as_json, lambda: sweep_table(run, told=announce is not None))
    if args.format != "table" and announce is None and not args.dry_run and any(r.announced for r in run.repositories):
        print("warning: owners NOT told (no SLACK_BOT_TOKEN): the announcements are recorded, the images deleted "
              "after the grace period all the same", file=sys.stderr)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ecr-cost-bot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"




@dataclass(frozen=True)
class Arg:
    """One argument of a command, as argparse's add_argument takes it."""
    flags: tuple[str, ...]
    options: dict


def arg(*flags: str, **options) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    """One command of the CLI: ``name`` is "scan", or "policy preview" for an action of a group."""
    name: str
    handler: Callable[..., int]
    help: str
    args: tuple[Arg, ...] = ()
    examples: tuple[str, ...] = ()
    usage: str | None = None


# every command that prints data takes the same --format; `text` is still read as `table`
FORMAT = arg("--format", choices=["table", "json", "csv", "text"], default="table", metavar="{table,json,csv}",
             help="table (for people, the default), json (the stable contract) or csv (that JSON as one table)")
QUIET = arg("--quiet", action="store_true", help="no progress on stderr (a bar on a terminal, else a line every 10 s)")
YES = arg("--yes", action="store_true", help="confirm the change")
REPO = arg("repo", metavar="REPO", help="repository name, region/name, or repository ARN")
POLICY_FILE = arg("--policy", metavar="FILE", help="policy JSON file (default: the base policy)")
GROUPS = {"policy": "lifecycle policies: validate, preview, apply, roll back"}

COMMANDS = (
    Command("serve", cmd_serve, "run the Slack app (Socket Mode when SLACK_APP_TOKEN is set, else HTTP on PORT) and "
                                "the weekly scheduler",
            examples=("ecr-cost-bot serve", "SLACK_APP_TOKEN=xapp-... ecr-cost-bot serve   # Socket Mode")),
    Command("scan", cmd_scan, "collect every repository now, store a snapshot, print the ranking",
            (FORMAT, QUIET, arg("--account", metavar="ID", help="scan only this account (its ID or its name in the "
                                                                "organisation), every region; stored apart, the "
                                                                "report and `repo` keep using the latest full scan")),
            ("ecr-cost-bot scan", "ecr-cost-bot scan --format csv > ecr.csv", "ecr-cost-bot scan --account team-a")),
    Command("repo", cmd_repo, "one repository's detail (what /ecr-cost NAME shows); `repo delete NAME --yes` exports "
                              "then deletes an unused repository",
            (arg("name", metavar="NAME", nargs="+", help="repository name, region/name, or repository ARN; or "
                                                         "`delete NAME`"),
             FORMAT, arg("--refresh", action="store_true", help="scan first instead of using the latest snapshot"),
             arg("--export", metavar="FILE", help="repo delete: also write the export (every image's digest, tags, "
                                                  "times and manifest) to FILE"),
             arg("--yes", action="store_true", help="repo delete: confirm the deletion"),
             arg("--force", action="store_true", help="repo delete: skip the unused check (never the in-use check)")),
            ("ecr-cost-bot repo payments-api", "ecr-cost-bot repo eu-west-1/payments-api --format json",
             "ecr-cost-bot repo delete old-prototype --export old.json --yes"),
            usage="%(prog)s NAME [--format table|json|csv] [--refresh]\n"
                  "       %(prog)s delete NAME [--export FILE] --yes [--force]"),
    Command("policy validate", cmd_policy_validate, "exit 0 when ECR would accept the policy, else list the problems",
            (arg("file", metavar="FILE", help="policy JSON file, or - for standard input"),),
            ("ecr-cost-bot policy validate my-policy.json", "cat my-policy.json | ecr-cost-bot policy validate -")),
    Command("policy preview", cmd_policy_preview, "which images a policy would expire, and the bytes and USD freed",
            (REPO, POLICY_FILE, FORMAT,
             arg("--refresh", action="store_true", help="read the repository now, not from the latest scan"),
             arg("--aws-preview", action="store_true", help="also ask AWS's own (slow, asynchronous) preview and "
                                                            "compare")),
            ("ecr-cost-bot policy preview payments-api",
             "ecr-cost-bot policy preview payments-api --policy my-policy.json --format json")),
    Command("policy apply", cmd_policy_apply, "back up the current policy, put the new one, record the decision",
            (REPO, POLICY_FILE, YES,
             arg("--accept-partial-in-use", action="store_true",
                 help="adopt even when some runtime (ECS, Lambda, Kubernetes) could not be read: images running "
                      "there are not protected"),
             arg("--force", action="store_true",
                 help="put the policy even though it would expire or archive images in use (named first)")),
            ("ecr-cost-bot policy apply payments-api --yes",
             "ecr-cost-bot policy apply payments-api --policy my-policy.json --yes")),
    Command("policy rollback", cmd_policy_rollback, "undo the latest adoption not yet undone: restore the policy it "
                                                    "replaced (repeat to walk back to the original)",
            (REPO, YES,
             arg("--force", action="store_true",
                 help="roll back even over a policy edited by hand since the bot set it (backed up first), or when "
                      "the restored policy would expire images in use (it names them)")),
            ("ecr-cost-bot policy rollback payments-api --yes",)),
    Command("decisions", cmd_decisions, "the decision log: adoptions, rollbacks, declines, snoozes", (FORMAT,),
            ("ecr-cost-bot decisions", "ecr-cost-bot decisions --format json > decisions.json")),
    Command("in-use", cmd_in_use, "every image that runs somewhere (ECS, Lambda, Kubernetes, recent pulls) and where",
            (arg("repo", metavar="REPO", nargs="?", help="only this repository (name, region/name or ARN)"), FORMAT,
             QUIET),
            ("ecr-cost-bot in-use", "ecr-cost-bot in-use payments-api --format json")),
    Command("guard", cmd_guard, "in-use images that a repository's current policy would expire; refreshes the "
                                "protection of policies the bot adopted", (FORMAT, QUIET),
            ("ecr-cost-bot guard", "ecr-cost-bot guard --format json")),
    Command("size", cmd_size, "why a repository is big: largest images and layers, churn per push, the base it is "
                              "built on, advice ranked by USD/month",
            (arg("name", metavar="NAME", help="repository name, region/name, or repository ARN"), FORMAT, QUIET),
            ("ecr-cost-bot size ml/training-gpu", "ecr-cost-bot size ml/training-gpu --format json")),
    Command("billing", cmd_billing, "billed cost per repository from the CUR (ECR_COST_CUR or ECR_COST_CUR_ATHENA) "
                                    "beside the estimate",
            (arg("--days", type=int, default=30, help="the complete UTC days ending yesterday (default 30)"), FORMAT,
             QUIET),
            ("ecr-cost-bot billing", "ecr-cost-bot billing --days 7 --format json")),
    Command("sweep", cmd_sweep, "announce, then after the grace period delete, images nobody pulled for N days in "
                                "opted-in repositories; `sweep enable NAME --days N`, `sweep disable NAME` set or "
                                "remove the opt-in",
            (arg("words", metavar="enable|disable NAME", nargs="*", help="set or remove a repository's opt-in"),
             arg("--days", type=int, help="sweep enable: delete images nobody pulled for N days (1 to 3650)"),
             arg("--dry-run", action="store_true", help="say what would be announced and deleted; change nothing, "
                                                        "tell nobody"),
             FORMAT),
            ("ecr-cost-bot sweep enable ci-builds --days 30", "ecr-cost-bot sweep --dry-run",
             "ecr-cost-bot sweep disable ci-builds"),
            usage="%(prog)s [--dry-run] [--format table|json|csv]\n       %(prog)s enable NAME --days N\n"
                  "       %(prog)s disable NAME"),
    Command("report", cmd_report, "the weekly report from a recent or a new scan: printed, or posted",
            (arg("--post", action="store_true", help="post it with its chart to ECR_COST_REPORT_CHANNEL (once per "
                                                     "period)"), FORMAT, QUIET),
            ("ecr-cost-bot report", "ecr-cost-bot report --post")),
    Command("watch", cmd_watch, "growth since the previous scan, repositories over their limit, new repositories "
                                "without a policy, policies that expire nothing",
            (arg("--post", action="store_true", help="one direct message per owner (admins for unowned), each "
                                                     "finding once per period; over-limit summary to the report "
                                                     "channel"), FORMAT),
            ("ecr-cost-bot watch", "ecr-cost-bot watch --post")),
    Command("templates", cmd_templates, "repository creation templates per account and region; `apply --yes` puts "
                                        "the base policy in the ROOT template, `rollback --yes` undoes it",
            (arg("action", nargs="?", choices=["apply", "rollback"], metavar="apply|rollback"), YES, FORMAT),
            ("ecr-cost-bot templates", "ecr-cost-bot templates apply --yes"),
            usage="%(prog)s [--format table|json|csv]\n       %(prog)s apply --yes\n       %(prog)s rollback --yes"),
    Command("health", cmd_health, "exit 0 when the `serve` using this ECR_COST_DB is alive (its heartbeat, its "
                                  "Socket Mode connection, GET /healthz in HTTP mode)",
            examples=("ecr-cost-bot health   # a container's HEALTHCHECK",)),
    Command("doctor", cmd_doctor, "check the setup end to end (AWS identity, accounts, IAM, Slack token, scopes, "
                                  "channel, database, billing sources): one line per check with its fix; exit 0 "
                                  "when none failed", (FORMAT,),
            ("ecr-cost-bot doctor", "ecr-cost-bot doctor --format json")),
    Command("demo", cmd_demo, "the whole flow on an embedded sample registry (no AWS account needed)",
            (arg("--out", metavar="DIR", default="ecr-cost-demo",
                 help="where the report's Block Kit JSON and chart PNG are written (default: ecr-cost-demo)"),
             arg("--keep", action="store_true",
                 help="after the story, keep the sample registry running (a moto server) and print the `export` "
                      "lines with which every command, and serve, work on it; Ctrl-C stops it"),
             arg("--port", type=int, metavar="N", help="with --keep: the sample registry's port (default 4566)")),
            ("ecr-cost-bot demo", "ecr-cost-bot demo --keep --port 4566")),
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI from COMMANDS: each command's help is its description, its examples the epilog."""
    parser = argparse.ArgumentParser(
        prog="ecr-cost-bot",
        description="Rank AWS ECR repositories by what they really store and cost. "
                    "Configuration comes from environment variables (see README).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for command in COMMANDS:
        group, _, action = command.name.partition(" ")
        where = commands
        if action:
            if group not in groups:
                groups[group] = commands.add_parser(group, help=GROUPS[group], description=GROUPS[group]) \
                    .add_subparsers(dest="action", required=True, metavar="ACTION")
            where = groups[group]
        examples = "examples:\n" + "\n".join(f"  {line}" for line in command.examples) if command.examples else None
        sub = where.add_parser(action or group, help=command.help, description=command.help, usage=command.usage,
                               epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
        for argument in command.args:
            sub.add_argument(*argument.flags, **argument.options)
        sub.set_defaults(handler=command.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "format", None) == "text":  # the older name of table
        args.format = "table"
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
