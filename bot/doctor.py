"""`ecr-cost-bot doctor`: the setup checked end to end, one result per check, each failure with its fix.

Every check is a small function returning ``Result`` records; ``run_checks`` runs them in the order a newcomer
sets things up (AWS, IAM, Slack, the database, the optional sources). Nothing here writes to AWS or Slack, and
nothing is created but what ECR_COST_DB names: IAM actions are simulated with iam:SimulatePrincipalPolicy where
the identity may, else tried with harmless reads (on names that do not exist: AWS authorises a request before it
looks the resource up, so "not found" means "allowed"); writes and Cost Explorer's paid call are never tried.
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from .aws.accounts import Account, principal_role_arn, unreadable_cause
from .aws.ecr import EcrCollector
from .aws.errors import translated
from .aws.sessions import default_session_factory
from .config import Settings
from .errors import (
    AwsAccessDenied,
    AwsCredentialsRefused,
    AwsError,
    AwsNotFound,
    ConfigError,
    EstateUnreadable,
    brief,
    describe,
)

OK, FAIL, WARN, SKIP, UNCHECKED = "ok", "fail", "warn", "skip", "unchecked"
SYMBOLS = {OK: "ok", FAIL: "FAIL", WARN: "warn", SKIP: "skip", UNCHECKED: "??"}
# answered, yet no word on the permission: the endpoint lacks the API, or failed
NOT_A_VERDICT = ("InvalidAction", "UnknownOperationException", "NotImplemented", "InternalFailure")
PROBE = "ecr-cost-bot-doctor-probe"  # a name no resource has: a read of it is refused, or answers "not found"
PROBE_DIGEST = "sha256:" + "0" * 64
WORKERS = 16
ACCOUNT_LINES = 20  # more accounts read without a problem than this: one line says how many


@dataclass(frozen=True)
class Result:
    check: str
    status: str  # ok | fail | warn (works, a feature is off) | skip (not configured) | unchecked (cannot tell)
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Permission:
    """The IAM actions one feature needs: the one list doctor checks (deploy/cloudformation/*.yaml grant them)."""

    feature: str
    actions: tuple[str, ...]
    required: bool  # missing: a failure; else a warning (that feature alone is off)
    fix: str
    own_only: bool = False  # the bot's own identity only (billing); else every account it enters


PERMISSIONS = (
    Permission("scan", ("ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:BatchGetImage",
                        "ecr:GetLifecyclePolicy", "ecr:ListTagsForResource"), True,
               "grant the Inventory statement (deploy/cloudformation/reader-role.yaml, README 'IAM permissions')"),
    Permission("adopt", ("ecr:PutLifecyclePolicy", "ecr:DeleteLifecyclePolicy", "ecr:TagResource", "ecr:PutImage",
                         "ecr:BatchDeleteImage"), False,
               "owners cannot adopt, roll back or pin: deploy the roles with AllowChanges=true (the OwnerChanges "
               "statement)"),
    Permission("in-use", ("ecs:ListClusters", "ecs:ListServices", "ecs:DescribeServices",
                          "ecs:DescribeServiceRevisions", "ecs:ListTasks", "ecs:DescribeTasks",
                          "ecs:DescribeTaskDefinition", "lambda:ListFunctions", "lambda:ListVersionsByFunction",
                          "lambda:ListAliases", "lambda:GetFunction"), True,
               "grant the WhereImagesRun statement: without it the in-use check is partial and adoption refuses"),
    Permission("who may pull", ("ecr:GetRepositoryPolicy", "ecr:GetRegistryPolicy"), True,
               "grant ecr:GetRepositoryPolicy and ecr:GetRegistryPolicy: without them the accounts that may pull an "
               "image are unknown"),
    Permission("size", ("ecr:GetDownloadUrlForLayer",), False,
               "grant ecr:GetDownloadUrlForLayer: without it `size` names no Dockerfile step"),
    Permission("pull-time exclusion", ("ecr:ListPullTimeUpdateExclusions",), False,
               "grant ecr:ListPullTimeUpdateExclusions: without it the scan cannot tell whether its reads count as "
               "pulls"),
    Permission("delete unused", ("ecr:DeleteRepository",), False,
               "owners cannot delete an unused repository: deploy the roles with AllowChanges=true"),
    Permission("AWS preview", ("ecr:StartLifecyclePolicyPreview", "ecr:GetLifecyclePolicyPreview"), False,
               "`policy preview --aws-preview` cannot ask AWS: deploy the roles with AllowChanges=true"),
    Permission("limits and sweep opt-in", ("ecr:UntagResource",), False,
               "owners cannot undo a limit or stop a sweep: deploy the roles with AllowChanges=true"),
    Permission("default policy for new repositories", ("ecr:DescribeRepositoryCreationTemplates",
                                                       "ecr:CreateRepositoryCreationTemplate",
                                                       "ecr:UpdateRepositoryCreationTemplate",
                                                       "ecr:DeleteRepositoryCreationTemplate"), False,
               "`templates` cannot list or apply the ROOT creation template: grant the RepositoryCreationTemplates "
               "statement (deploy/cloudformation)"),
    Permission("billing", ("ce:GetCostAndUsage",), True,
               "grant ce:GetCostAndUsage to the bot's own identity, or set ECR_COST_BILLING=off (or cur)",
               own_only=True),
)


# -- AWS ------------------------------------------------------------------------------------------------------


class _NoCache:
    """Doctor reads no manifest: the collector's cache is never asked."""

    def get_manifests(self, digests):
        return {}

    def put_manifests(self, manifests):
        pass


def _regions_source(settings: Settings, session) -> tuple[tuple[str, ...], str]:
    if settings.regions:
        return settings.regions, "ECR_COST_REGIONS"
    if settings.aws_region:
        return (settings.aws_region,), "AWS_REGION"
    return ((session.region_name,), "the AWS profile") if session.region_name else ((), "")


def aws_checks(settings: Settings, session_factory=None, collector: EcrCollector | None = None) -> list[Result]:
    """The identity and region, every account and region readable, the IAM actions of every feature."""
    from .wiring import build_collector

    factory = session_factory or default_session_factory(region_name=settings.aws_region)
    collector = collector or build_collector(settings, _NoCache(), factory)
    regions, source = _regions_source(settings, factory(None))
    if not regions:
        return [Result("AWS identity", FAIL, "no region", "set ECR_COST_REGIONS (or AWS_REGION)")]
    home = regions[0] if regions != ("all",) else (settings.aws_region or "us-east-1")
    try:
        identity = collector.client(factory(None), "sts", home, retries=False).get_caller_identity()
    except Exception as exc:  # noqa: BLE001 - each cause is one line
        return [Result("AWS identity", FAIL, brief(unreadable_cause(exc)), _credentials_fix(exc))]
    where = "every enabled region" if regions == ("all",) else ", ".join(regions)
    results = [Result("AWS identity", OK, f"{identity['Arn']} in account {identity['Account']}; regions: {where} "
                                          f"({source})")]
    try:
        accounts, problems = collector.accounts()
    except EstateUnreadable as exc:
        return results + [Result("accounts", FAIL, brief(str(exc)), "see the lines above and docs/doctor.md")]
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="doctor") as pool:
        checked = list(pool.map(lambda a: _account(collector, a, own=a.account_id == identity["Account"]), accounts))
    lines = [line for line, _ in checked]
    quiet = [line for line, found in checked if line.status == OK and found.account_id != identity["Account"]]
    if len(quiet) > ACCOUNT_LINES:  # an organisation: its failures one by one, the others counted
        lines = [line for line in lines if line not in quiet] + [Result(
            "other accounts", OK,
            f"{_count(len(quiet), 'more account')} readable: ECR listed in each of their regions")]
    results += lines + [Result(f"account {p.account_id}", FAIL, brief(p.message), _account_fix(p.message, settings))
                        for p in problems]
    results += _permission_lines(settings, [found for _, found in checked], identity["Account"])
    return results


def _credentials_fix(exc: BaseException) -> str:
    if isinstance(exc, AwsCredentialsRefused):
        return "refresh the credentials (aws sso login, a new access key) or set AWS_PROFILE"
    return "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance, task or pod role"


def _account_fix(message: str, settings: Settings) -> str:
    if message.startswith("cannot assume"):
        return ("check that the role exists in that account and trusts the bot's identity (deploy/cloudformation/"
                "reader-role.yaml with BotAccountId set to the bot's account), and that the bot may sts:AssumeRole it")
    if "organizations:ListAccounts" in message:
        return ("run the bot in the management account or a delegated administrator, with "
                "organizations:ListAccounts (deploy/cloudformation/bot-role.yaml)")
    if "ec2:DescribeRegions" in message:
        return "grant ec2:DescribeRegions, or list the regions in ECR_COST_REGIONS"
    if "ECR_COST_ACCOUNTS" in message:
        return "check the ID in ECR_COST_ACCOUNTS, or add the account's role to ECR_COST_ROLE_ARNS"
    return "see docs/doctor.md"


@dataclass
class _Found:
    """What one account's checks found: per feature, the actions denied, allowed and not checked."""

    account_id: str
    principal: str
    simulated: bool
    denied: dict[str, list[str]]
    unchecked: dict[str, list[str]]
    why: str = ""  # why it was not simulated
    never_tried: frozenset[str] = frozenset()  # writes and billed calls: no harmless read exists


def _account(collector: EcrCollector, account: Account, own: bool) -> tuple[Result, _Found]:
    """One account: ECR readable in each of its regions, and its principal's IAM actions."""
    session, home = account.session, account.regions[0]
    name = f"account {account.account_id}" + (f" ({account.name})" if account.name else "")
    try:
        principal = principal_role_arn(collector.client(session, "sts", home).get_caller_identity()["Arn"])
    except Exception as exc:  # noqa: BLE001
        return (Result(name, FAIL, f"cannot read its identity: {brief(describe(exc))}", "see docs/doctor.md"),
                _Found(account.account_id, "", False, {}, {}))
    failed = []
    for region in account.regions:
        try:
            collector.client(session, "ecr", region).describe_repositories(maxResults=1)
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{region}: {brief(describe(exc))}")
    if failed:
        line = Result(name, FAIL, f"as {principal}, cannot list repositories in " + "; ".join(failed),
                      f"grant ecr:DescribeRepositories to {principal}, or leave those regions out of ECR_COST_REGIONS")
    else:
        regions = ", ".join(account.regions)
        line = Result(name, OK, f"ECR readable as {principal} in {regions}")
    wanted = [p for p in PERMISSIONS if own or not p.own_only]
    return line, _permissions(collector, session, home, account.account_id, principal, wanted)


def _permissions(collector: EcrCollector, session, region: str, account_id: str, principal: str,
                 wanted: list[Permission]) -> _Found:
    actions = sorted({a for p in wanted for a in p.actions})
    try:
        decisions = _simulate(collector.client(session, "iam", region, retries=False), principal, actions)
    except Exception as exc:  # noqa: BLE001 - not allowed, or not an IAM principal: try harmless reads instead
        why = brief(describe(exc))
        tried, probed = _probe(collector, session, region, account_id)
        denied = {p.feature: [a for a in p.actions if tried.get(a) is False] for p in wanted}
        unchecked = {p.feature: [a for a in p.actions if tried.get(a) is None] for p in wanted}
        return _Found(account_id, principal, False, denied, unchecked, why,
                      frozenset(a for p in wanted for a in p.actions) - probed)
    return _Found(account_id, principal, True,
                  {p.feature: [a for a in p.actions if decisions.get(a) != "allowed"] for p in wanted},
                  {p.feature: [] for p in wanted})


def _simulate(iam, principal: str, actions: list[str]) -> dict[str, str]:
    """action -> IAM's decision for ``principal`` (allowed, implicitDeny, explicitDeny)."""
    decisions: dict[str, str] = {}
    for page in iam.get_paginator("simulate_principal_policy").paginate(PolicySourceArn=principal,
                                                                        ActionNames=actions):
        decisions.update({r["EvalActionName"]: r["EvalDecision"] for r in page.get("EvaluationResults", [])})
    return decisions


def _probe(collector: EcrCollector, session, region: str, account_id: str) -> tuple[dict[str, bool], frozenset[str]]:
    """(action -> True (allowed) or False (denied), the actions tried), by harmless reads of names that do not
    exist; an action tried but not answered is absent. Never a write, never Cost Explorer (each call is billed)."""
    ecr = collector.client(session, "ecr", region, retries=False)
    ecs = collector.client(session, "ecs", region, retries=False)
    lam = collector.client(session, "lambda", region, retries=False)
    # in the account's own registry: another account's resource would be refused by its policy, not by IAM
    partition = session.get_partition_for_region(region)
    arn = f"arn:{partition}:ecr:{region}:{account_id}:repository/{PROBE}"
    revision = f"arn:{partition}:ecs:{region}:{account_id}:service-revision/{PROBE}/{PROBE}/1"
    calls: dict[str, Callable[[], object]] = {
        "ecr:DescribeRepositories": lambda: ecr.describe_repositories(maxResults=1),
        "ecr:DescribeImages": lambda: ecr.describe_images(repositoryName=PROBE, maxResults=1),
        "ecr:BatchGetImage": lambda: ecr.batch_get_image(repositoryName=PROBE, imageIds=[{"imageDigest":
                                                                                          PROBE_DIGEST}]),
        "ecr:GetLifecyclePolicy": lambda: ecr.get_lifecycle_policy(repositoryName=PROBE),
        "ecr:ListTagsForResource": lambda: ecr.list_tags_for_resource(resourceArn=arn),
        "ecr:GetRepositoryPolicy": lambda: ecr.get_repository_policy(repositoryName=PROBE),
        "ecr:GetRegistryPolicy": lambda: ecr.get_registry_policy(),
        "ecr:GetDownloadUrlForLayer": lambda: ecr.get_download_url_for_layer(repositoryName=PROBE,
                                                                             layerDigest=PROBE_DIGEST),
        "ecr:ListPullTimeUpdateExclusions": lambda: ecr.list_pull_time_update_exclusions(maxResults=1),
        "ecr:GetLifecyclePolicyPreview": lambda: ecr.get_lifecycle_policy_preview(repositoryName=PROBE),
        "ecs:ListClusters": lambda: ecs.list_clusters(maxResults=1),
        "ecs:ListServices": lambda: ecs.list_services(cluster=PROBE, maxResults=1),
        "ecs:DescribeServices": lambda: ecs.describe_services(cluster=PROBE, services=[PROBE]),
        "ecs:ListTasks": lambda: ecs.list_tasks(cluster=PROBE, maxResults=1),
        "ecs:DescribeServiceRevisions": lambda: ecs.describe_service_revisions(serviceRevisionArns=[revision]),
        "ecs:DescribeTasks": lambda: ecs.describe_tasks(cluster=PROBE, tasks=[PROBE]),
        "ecs:DescribeTaskDefinition": lambda: ecs.describe_task_definition(taskDefinition=f"{PROBE}:1"),
        "lambda:ListFunctions": lambda: lam.list_functions(MaxItems=1),
        "lambda:ListVersionsByFunction": lambda: lam.list_versions_by_function(FunctionName=PROBE, MaxItems=1),
        "lambda:ListAliases": lambda: lam.list_aliases(FunctionName=PROBE, MaxItems=1),
        "lambda:GetFunction": lambda: lam.get_function(FunctionName=PROBE),
    }
    found: dict[str, bool | None] = {}
    for action, call in calls.items():
        try:
            call()
            found[action] = True
        except AwsAccessDenied:
            found[action] = False
        except AwsError as exc:
            if exc.answered and (exc.status or 400) < 500 and exc.code not in NOT_A_VERDICT:
                found[action] = True  # authorised, then refused for the name: the action is allowed
        except OSError:
            pass  # not answered: unknown
    return {action: value for action, value in found.items() if value is not None}, frozenset(calls)


def _permission_lines(settings: Settings, found: list[_Found], own_account: str) -> list[Result]:
    """One line per feature, over every account entered."""
    results = []
    for permission in PERMISSIONS:
        name = f"IAM {permission.feature}"
        if permission.feature == "billing" and settings.billing != "cost-explorer":
            results.append(Result(name, SKIP, f"skipped: not configured (ECR_COST_BILLING={settings.billing})"))
            continue
        mine = [f for f in found if permission.feature in f.denied]
        if not mine:
            continue  # billing, when the bot's own account is left out by ECR_COST_ACCOUNTS
        missing = [f"{f.principal} lacks {', '.join(f.denied[permission.feature])}" for f in mine
                   if f.denied[permission.feature]]
        unknown = [f for f in mine if f.unchecked[permission.feature]]
        how = _how(mine)
        if missing:
            results.append(Result(name, FAIL if permission.required else WARN,
                                  f"{'; '.join(missing)} ({how})", permission.fix))
        elif unknown and all(set(f.unchecked[permission.feature]) == set(permission.actions) for f in unknown):
            results.append(Result(name, UNCHECKED, (
                f"cannot check without iam:SimulatePrincipalPolicy ({unknown[0].why}); "
                f"{_unchecked(permission.feature, unknown)}"),
                f"grant iam:SimulatePrincipalPolicy on {unknown[0].principal} to check it"))
        else:
            unsure = {a for f in unknown for a in f.unchecked[permission.feature]}
            allowed = f"{len(permission.actions) - len(unsure)} of " if unsure else ""
            results.append(Result(name, OK, f"{allowed}{_count(len(permission.actions), 'action')} allowed in "
                                            f"{_count(len(mine), 'account')} ({how})" +
                                  (f"; not checked: {_unchecked(permission.feature, unknown)}" if unknown else "")))
    return results


def _unchecked(feature: str, found: list[_Found]) -> str:
    actions = {a for f in found for a in f.unchecked[feature]}
    never = sorted(a for a in actions if any(a in f.never_tried for f in found))
    unanswered = sorted(actions - set(never))
    return "; ".join(([f"{', '.join(never)}: writes or billed calls, never tried"] if never else []) +
                     ([f"{', '.join(unanswered)}: the harmless read got no answer"] if unanswered else []))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _how(found: list[_Found]) -> str:
    simulated = sum(f.simulated for f in found)
    if simulated == len(found):
        return "simulated with iam:SimulatePrincipalPolicy"
    if not simulated:
        return "tried with harmless reads: no policy simulation"
    return f"simulated in {simulated}, tried with harmless reads in {len(found) - simulated}"


# -- Slack ----------------------------------------------------------------------------------------------------


def _split(line: str) -> tuple[str, str]:
    """slack_failure's "VARIABLE: Slack answered X; the fix" as (detail, fix)."""
    detail, _, fix = line.partition("; ")
    return detail, fix or "check SLACK_API_URL and the network"


def slack_checks(settings: Settings) -> list[Result]:
    """The bot token, its scopes against the manifest, the report channel, the Socket Mode token (or the
    signing secret of HTTP mode)."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    from .errors import slack_failure
    from .slack.app import BOT_SCOPES, auth_test, web_client

    if not settings.slack_bot_token:
        return [Result("Slack token", FAIL, "SLACK_BOT_TOKEN is not set",
                       "install the app from manifest.yml and set SLACK_BOT_TOKEN to its Bot User OAuth Token "
                       "(xoxb-..., OAuth & Permissions)")] + _socket(settings, WebClient, SlackApiError, slack_failure)
    client = web_client(settings)
    try:
        answer = auth_test(settings, client)
    except ConfigError as exc:
        later = "skipped: the token does not work"
        return [Result("Slack token", FAIL, *_split(str(exc))), Result("Slack scopes", SKIP, later),
                Result("report channel", SKIP, later)] + _socket(settings, WebClient, SlackApiError, slack_failure)
    bot_name = answer.get("user") or "ecr-cost"
    results = [Result("Slack token", OK, f"bot @{bot_name} ({answer.get('user_id')}) in {answer.get('team')}")]
    headers = {k.lower(): v for k, v in (answer.headers or {}).items()}
    granted = headers.get("x-oauth-scopes")
    if granted is None:
        results.append(Result("Slack scopes", UNCHECKED, "Slack did not say the token's scopes (no x-oauth-scopes "
                                                         "header)", "compare the app's scopes with manifest.yml"))
    else:
        missing = [s for s in BOT_SCOPES if s not in {g.strip() for g in granted.split(",")}]
        results.append(Result("Slack scopes", FAIL, f"the token lacks {', '.join(missing)}",
                              "add them: reinstall the app from manifest.yml (OAuth & Permissions, Reinstall to "
                              "Workspace) and update SLACK_BOT_TOKEN") if missing
                       else Result("Slack scopes", OK, f"all {len(BOT_SCOPES)} scopes of manifest.yml"))
    results.append(_channel(settings, client, bot_name, SlackApiError, slack_failure))
    return results + _socket(settings, WebClient, SlackApiError, slack_failure)


def _channel(settings: Settings, client, bot_name: str, api_error, slack_failure) -> Result:
    channel = settings.report_channel
    if not channel:
        return Result("report channel", SKIP, "skipped: not configured (ECR_COST_REPORT_CHANNEL): the weekly job "
                                              "only rescans, no report is posted")
    invite = f"invite the bot: /invite @{bot_name} in that channel"
    try:
        info = client.conversations_info(channel=channel)["channel"]
    except api_error as exc:
        if exc.response.get("error") != "missing_scope":
            if exc.response.get("error") == "not_in_channel":
                return Result("report channel", FAIL, f"the bot is not a member of {channel}", invite)
            return Result("report channel", FAIL, *_split(slack_failure(exc, "ECR_COST_REPORT_CHANNEL",
                                                                        settings.slack_api_url)))
        try:  # without channels:read: reading the history needs membership, the manifest's channels:history does
            client.conversations_history(channel=channel, limit=1)
        except api_error as exc2:
            if exc2.response.get("error") == "not_in_channel":
                return Result("report channel", FAIL, f"the bot is not a member of {channel}", invite)
            return Result("report channel", FAIL, *_split(slack_failure(exc2, "ECR_COST_REPORT_CHANNEL",
                                                                         settings.slack_api_url)))
        return Result("report channel", OK, f"{channel}: the bot is a member")
    except OSError as exc:
        return Result("report channel", FAIL, f"cannot reach Slack: {brief(exc)}",
                      "check SLACK_API_URL and the network")
    label = f"#{info['name']} ({channel})" if info.get("name") else channel
    if info.get("is_archived"):
        return Result("report channel", FAIL, f"{label} is archived",
                      "unarchive it or set ECR_COST_REPORT_CHANNEL to another channel")
    if not info.get("is_member"):
        return Result("report channel", FAIL, f"the bot is not a member of {label}", invite)
    return Result("report channel", OK, f"{label}: the bot is a member")


def _socket(settings: Settings, web_client_class, api_error, slack_failure) -> list[Result]:
    if not settings.slack_app_token:
        if settings.slack_signing_secret:
            return [Result("Slack mode", OK, f"HTTP mode on PORT {settings.port} (SLACK_APP_TOKEN not set); "
                                             f"signing secret set")]
        return [Result("Slack mode", FAIL, "neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET (HTTP "
                                           "mode) is set",
                       "set SLACK_APP_TOKEN (xapp-..., Basic Information, App-Level Tokens, scope "
                       "connections:write) or SLACK_SIGNING_SECRET")]
    client = web_client_class(token=settings.slack_app_token, base_url=settings.slack_api_url)
    try:
        client.apps_connections_open(app_token=settings.slack_app_token)
    except (api_error, OSError, ValueError) as exc:
        return [Result("Slack mode", FAIL, *_split(slack_failure(exc, "SLACK_APP_TOKEN", settings.slack_api_url)))]
    return [Result("Slack mode", OK, "Socket Mode: SLACK_APP_TOKEN opens a connection")]


# -- the database and the optional sources ---------------------------------------------------------------------


def database_check(settings: Settings) -> Result:
    """ECR_COST_DB writable, without creating anything: an existing file is opened read-write and a write lock
    taken and released; a missing one needs a writable directory (the first command that needs it creates it)."""
    path = Path(settings.db_path).expanduser()
    name = "database"
    if path.is_dir():
        return Result(name, FAIL, f"ECR_COST_DB={settings.db_path} is a directory", "set ECR_COST_DB to a file path")
    if not path.exists():
        folder = path.parent
        if not folder.is_dir():
            return Result(name, FAIL, f"the directory of ECR_COST_DB={settings.db_path} does not exist",
                          f"create {folder} or set ECR_COST_DB to a path in an existing directory")
        if not os.access(folder, os.W_OK | os.X_OK):
            return Result(name, FAIL, f"cannot create {path}: {folder} is not writable",
                          f"make {folder} writable by this user, or set ECR_COST_DB elsewhere")
        return Result(name, OK, f"{path} does not exist yet; its directory is writable (the first scan creates it)")
    try:
        connection = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=rw", uri=True, timeout=5)
        try:
            connection.execute("BEGIN IMMEDIATE")  # the write lock: what every write needs
            connection.execute("ROLLBACK")
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error as exc:
        fix = ("another process holds the lock: retry, or check for a stuck process" if "locked" in str(exc)
               else f"make {path} (and its directory) writable, or point ECR_COST_DB at the bot's database")
        return Result(name, FAIL, f"cannot write {path}: {exc}", fix)
    return Result(name, OK, f"{path} is writable ({tables} schema objects)")


def billing_checks(settings: Settings, session_factory=None) -> list[Result]:
    """The CUR (ECR_COST_CUR files, or the ECR_COST_CUR_ATHENA table); Cost Explorer is an IAM line above."""
    factory = session_factory or default_session_factory(region_name=settings.aws_region)
    if settings.cur:
        return [_cur_files(settings, factory)]
    if settings.cur_athena:
        return [_athena(settings, factory)]
    return [Result("CUR", SKIP, "skipped: not configured (ECR_COST_CUR, ECR_COST_CUR_ATHENA)")]


def _cur_files(settings: Settings, factory) -> Result:
    from .aws.billing import CurReader
    from .errors import BillingUnavailable

    assert settings.cur is not None  # checked only when set
    try:
        files = CurReader(settings.cur, factory).files()
    except BillingUnavailable as exc:
        return Result("CUR", FAIL, brief(str(exc)), "check the bucket and prefix in ECR_COST_CUR, and that the bot may "
                                                   "s3:ListBucket and s3:GetObject there (README 'IAM permissions')")
    if not files:
        return Result("CUR", FAIL, f"no Parquet file under ECR_COST_CUR={settings.cur}",
                      "point ECR_COST_CUR at the CUR 2.0 export's folder, a glob like /data/cur/**/*.parquet, or "
                      "s3://bucket/prefix (the export must be in Parquet)")
    return Result("CUR", OK, f"{_count(len(files), 'Parquet file')} under {settings.cur}")


def _athena(settings: Settings, factory) -> Result:
    assert settings.cur_athena is not None  # checked only when set
    database, table = settings.cur_athena.split(".", 1)
    session = factory(None)
    try:
        with translated():  # making the clients fails too (no region ...)
            session.client("glue").get_table(DatabaseName=database, Name=table)
            if settings.athena_workgroup:
                session.client("athena").get_work_group(WorkGroup=settings.athena_workgroup)
    except AwsError as exc:
        if not exc.answered:
            return Result("CUR", FAIL, f"{settings.cur_athena}: {brief(exc.message)}",
                          "check the AWS endpoint and the network")
        if isinstance(exc, AwsNotFound) and exc.code == "EntityNotFoundException":
            fix = "check ECR_COST_CUR_ATHENA (database.table in the Glue Data Catalog of the bot's region)"
        elif isinstance(exc, AwsAccessDenied):
            fix = "grant the QueryTheCurInAthena statement (README 'IAM permissions', Billing)"
        else:
            fix = "check ECR_COST_CUR_ATHENA and ECR_COST_ATHENA_WORKGROUP"
        return Result("CUR", FAIL, f"{settings.cur_athena}: {brief(describe(exc))}", fix)
    return Result("CUR", OK, f"Athena table {settings.cur_athena} found" + (
        f", workgroup {settings.athena_workgroup}" if settings.athena_workgroup else ""))


def kube_checks(settings: Settings) -> list[Result]:
    if not settings.kube_contexts:
        return [Result("Kubernetes", SKIP, "skipped: not configured (ECR_COST_KUBE_CONTEXTS)")]
    try:
        from kubernetes import client, config
    except ImportError:
        return [Result("Kubernetes", FAIL, "ECR_COST_KUBE_CONTEXTS is set but the Kubernetes client is not installed",
                       "pip install 'ecr-cost-bot[kube]'")]
    results = []
    for context in settings.kube_contexts:
        name = f"Kubernetes {context}"
        try:
            api = config.new_client_from_config(config_file=settings.kubeconfig, context=context, persist_config=False)
        except Exception as exc:  # noqa: BLE001 - config errors come in many classes
            results.append(Result(name, FAIL, f"cannot load the context: {brief(exc)}",
                                  "check the context's name in KUBECONFIG (kubectl config get-contexts)"))
            continue
        try:
            client.CoreV1Api(api).list_pod_for_all_namespaces(limit=1, _request_timeout=10)
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, forbidden
            results.append(Result(name, FAIL, f"cannot list pods: {brief(exc)}",
                                  "check the cluster is reachable and bind deploy/kubernetes-clusterrole.yaml to the "
                                  "kubeconfig's identity"))
            continue
        results.append(Result(name, OK, "loaded; pods readable"))
    return results


# -- all of it ------------------------------------------------------------------------------------------------


def run_checks(settings: Settings, session_factory=None) -> list[Result]:
    """Every check, in the order the setup is done."""
    return [*aws_checks(settings, session_factory), *slack_checks(settings), database_check(settings),
            *billing_checks(settings, session_factory), *kube_checks(settings)]


def passed(results: Iterable[Result]) -> bool:
    """All pass: nothing failed (a skipped optional source, a warning or what cannot be checked is no failure)."""
    return all(r.status != FAIL for r in results)


def doctor_table(results: list[Result]) -> str:
    width = max((len(r.check) for r in results), default=0)
    lines = [f"{SYMBOLS[r.status]:<4}  {r.check:<{width}}  {r.detail}" + (f"; fix: {r.fix}" if r.fix else "")
             for r in results]
    counts = {status: sum(r.status == status for r in results) for status in SYMBOLS}
    summary = ", ".join(f"{counts[s]} {label}" for s, label in ((OK, "ok"), (FAIL, "failed"), (WARN, "warnings"),
                                                                 (UNCHECKED, "unchecked"), (SKIP, "skipped"))
                        if counts[s])
    lines.append(f"{len(results)} checks: {summary}" + ("" if passed(results) else "; fix the FAIL lines"))
    return "\n".join(lines)


def doctor_json(results: list[Result]) -> dict:
    return {"ok": passed(results), "checks": [asdict(r) for r in results]}
