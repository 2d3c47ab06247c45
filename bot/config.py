"""Settings from the environment, validated once at start.

A bad value raises ConfigError whose message is one line naming the variable.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .core.lifecycle import validate_policy
from .core.models import SLACK_USER_ID
from .errors import ConfigError

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")



@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    report_channel: str | None = None
    schedule: str = "0 9 * * mon"
    timezone: str = "UTC"
    regions: tuple[str, ...] = ()  # empty: aws_region, else the AWS profile's region; ("all",): every enabled one
    aws_region: str | None = None  # AWS_REGION (what ECS, Lambda and EKS set), else AWS_DEFAULT_REGION
    role_arns: tuple[str, ...] = ()
    price_per_gb_month: float = 0.10
    unused_days: int = 90
    owner_tag: str = "owner"
    admins: tuple[str, ...] = ()
    base_policy_path: str | None = None
    base_policy: dict = field(default_factory=dict)
    db_path: str = "ecr-cost.db"
    port: int = 3000
    billing: str = "cost-explorer"  # where the report's billed figures come from: cost-explorer | cur | off
    cur: str | None = None  # a CUR 2.0 Parquet export: a local path or glob, or s3://bucket/prefix
    cur_athena: str | None = None  # database.table of the CUR in Athena
    athena_workgroup: str | None = None
    athena_output: str | None = None  # s3://bucket/prefix/ for the query results (else the workgroup's)
    snapshot_max_age_hours: float = 24.0  # older: /ecr-cost NAME re-reads that repository
    report_scan_max_age_minutes: float = 60.0  # `report` reuses a complete scan younger than this (0: always scans)
    recent_pull_days: int = 14  # an image pulled within this many days counts as in use (0: off)
    kube_contexts: tuple[str, ...] = ()  # kubeconfig contexts whose pods and workloads count as in use
    # where ECS and Lambda are read for in-use images (empty: every region enabled in each account; an image is
    # pulled across regions, so a task in us-west-2 may run a us-east-1 image)
    runtime_regions: tuple[str, ...] = ()
    kubeconfig: str | None = None  # KUBECONFIG (the client's default, ~/.kube/config, when unset)
    guard_schedule: str = "0 6 * * *"
    large_image_gb: float = 1.0  # `size` flags images above this many GB (2^30 bytes)
    org_role_name: str | None = None  # assumed in every ACTIVE account of the AWS Organization
    accounts: tuple[str, ...] = ()  # only these account IDs (empty: all)
    exclude_accounts: tuple[str, ...] = ()
    watch_schedule: str = "0 8 * * *"  # the daily watch: growth, limits, new repositories, ineffective policies
    growth_pct: float = 20.0  # a repository "grows" when both are exceeded between two scans
    growth_min_gb: float = 1.0
    sweep_schedule: str = "0 7 * * *"  # the daily sweep of images nobody pulled (opted-in repositories only)
    sweep_grace_hours: float = 168.0  # between announcing a sweep candidate and deleting it
    sweep_max_per_run: int = 1000  # most images deleted per repository and run


def shipped_base_policy_text() -> str:
    return resources.files("bot").joinpath("policies/base.json").read_text(encoding="utf-8")


def _csv(value: str | None) -> tuple[str, ...]:
    """Comma-separated items, each once, in order."""
    return tuple(dict.fromkeys(item.strip() for item in (value or "").split(",") if item.strip()))


def _number(name: str, value: str, cast, minimum, maximum=None):
    try:
        number = cast(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if number != number or number < minimum or (maximum is not None and number > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name}: must be {bounds}, got {value!r}")
    return number


def _cron(name: str, expression: str, timezone: str) -> None:
    if len(expression.split()) != 5:
        raise ConfigError(f"{name}: expected 5 cron fields (minute hour day month weekday), got {expression!r}")
    if expression in SHIPPED_SCHEDULES:  # known good (a test checks them): no scheduler import for every command
        return
    from apscheduler.triggers.cron import CronTrigger  # validated with the library that will run it

    try:
        CronTrigger.from_crontab(expression, timezone=timezone)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc} in {expression!r}") from None


def _base_policy(path: str | None) -> dict:
    name = "ECR_COST_BASE_POLICY"
    try:
        text = Path(path).read_text(encoding="utf-8") if path else shipped_base_policy_text()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path!r}: {exc.strerror}") from None
    policy, problems = validate_policy(text)
    if problems:
        more = f" (and {len(problems) - 1} more problems: see `ecr-cost-bot policy validate {path}`)" \
            if len(problems) > 1 else ""
        raise ConfigError(f"{name}: ECR would reject {path!r}: {problems[0]}{more}")
    assert policy is not None  # no problems: a policy
    return policy


BILLING_SOURCES = ("cost-explorer", "cur", "off")
_S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_ATHENA_TABLE = re.compile(r"^[A-Za-z0-9_-]{1,255}\.[A-Za-z0-9_-]{1,255}$")
_WORKGROUP = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def _billing(get) -> dict:
    """ECR_COST_BILLING, ECR_COST_CUR, ECR_COST_CUR_ATHENA, ECR_COST_ATHENA_WORKGROUP, ECR_COST_ATHENA_OUTPUT."""
    billing = (get("ECR_COST_BILLING") or "cost-explorer").lower()
    if billing not in BILLING_SOURCES:
        raise ConfigError(f"ECR_COST_BILLING: expected one of {', '.join(BILLING_SOURCES)}, got {billing!r}")
    cur, athena = get("ECR_COST_CUR"), get("ECR_COST_CUR_ATHENA")
    if cur and athena:
        raise ConfigError("ECR_COST_CUR: set either ECR_COST_CUR (files) or ECR_COST_CUR_ATHENA (a table), not both")
    if cur and cur.lower().startswith("s3:") and not _S3_URL.match(cur):
        raise ConfigError(f"ECR_COST_CUR: expected s3://bucket/prefix, a local path or a glob, got {cur!r}")
    if athena and not _ATHENA_TABLE.match(athena):
        raise ConfigError(f"ECR_COST_CUR_ATHENA: expected database.table, got {athena!r}")
    workgroup, output = get("ECR_COST_ATHENA_WORKGROUP"), get("ECR_COST_ATHENA_OUTPUT")
    if workgroup and not _WORKGROUP.match(workgroup):
        raise ConfigError(f"ECR_COST_ATHENA_WORKGROUP: not an Athena workgroup name: {workgroup!r}")
    if output and not _S3_URL.match(output):
        raise ConfigError(f"ECR_COST_ATHENA_OUTPUT: expected s3://bucket/prefix/, got {output!r}")
    if (workgroup or output) and not athena:
        name = "ECR_COST_ATHENA_WORKGROUP" if workgroup else "ECR_COST_ATHENA_OUTPUT"
        raise ConfigError(f"{name}: goes with ECR_COST_CUR_ATHENA (database.table), which is not set")
    if billing == "cur" and not (cur or athena):
        raise ConfigError("ECR_COST_BILLING: 'cur' needs ECR_COST_CUR (a Parquet export) or ECR_COST_CUR_ATHENA")
    return dict(billing=billing, cur=cur, cur_athena=athena, athena_workgroup=workgroup, athena_output=output)


# numeric settings: field -> (variable, default, type, lowest, highest)
NUMBERS: dict[str, tuple[str, str, type, float, float]] = {
    "price_per_gb_month": ("ECR_COST_PRICE_PER_GB_MONTH", "0.10", float, 0.0, 1000.0),
    "unused_days": ("ECR_COST_UNUSED_DAYS", "90", int, 1, 36500),
    "port": ("PORT", "3000", int, 1, 65535),
    "snapshot_max_age_hours": ("ECR_COST_SNAPSHOT_MAX_AGE_HOURS", "24", float, 0.0, 24 * 365),
    "report_scan_max_age_minutes": ("ECR_COST_REPORT_SCAN_MAX_AGE_MINUTES", "60", float, 0.0, 10080),
    "recent_pull_days": ("ECR_COST_RECENT_PULL_DAYS", "14", int, 0, 36500),
    "large_image_gb": ("ECR_COST_LARGE_IMAGE_GB", "1", float, 0.001, 1024.0),
    "growth_pct": ("ECR_COST_GROWTH_PCT", "20", float, 0.0, 100000.0),
    "growth_min_gb": ("ECR_COST_GROWTH_MIN_GB", "1", float, 0.0, 1e6),
}
# cron settings: field -> (variable, default)
SCHEDULES = {"schedule": ("ECR_COST_SCHEDULE", "0 9 * * mon"),
             "guard_schedule": ("ECR_COST_GUARD_SCHEDULE", "0 6 * * *"),
             "watch_schedule": ("ECR_COST_WATCH_SCHEDULE", "0 8 * * *")}
SWEEP_SCHEDULE = "0 7 * * *"
SHIPPED_SCHEDULES = frozenset([SWEEP_SCHEDULE, *(default for _, default in SCHEDULES.values())])


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment; a missing or wrong one is a ConfigError naming the variable."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value and value.strip() else None

    timezone = get("ECR_COST_TIMEZONE") or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"ECR_COST_TIMEZONE: unknown IANA time zone {timezone!r}") from None
    schedules: dict[str, Any] = {key: get(name) or default for key, (name, default) in SCHEDULES.items()}
    for key, (name, _) in SCHEDULES.items():
        _cron(name, schedules[key], timezone)
    numbers: dict[str, Any] = {key: _number(name, get(name) or default, kind, low, high)
                               for key, (name, default, kind, low, high) in NUMBERS.items()}
    owner_tag = get("ECR_COST_OWNER_TAG") or "owner"
    if len(owner_tag) > 128:
        raise ConfigError("ECR_COST_OWNER_TAG: AWS tag keys are at most 128 characters")
    base_policy_path = get("ECR_COST_BASE_POLICY")
    return Settings(
        timezone=timezone, aws_region=get("AWS_REGION") or get("AWS_DEFAULT_REGION"), owner_tag=owner_tag,
        base_policy_path=base_policy_path, base_policy=_base_policy(base_policy_path),
        db_path=get("ECR_COST_DB") or "ecr-cost.db", kube_contexts=_csv(get("ECR_COST_KUBE_CONTEXTS")),
        kubeconfig=get("KUBECONFIG"), **schedules, **numbers, **_slack(get), **_estate(get), **_billing(get),
        **_sweep(get, timezone),
    )


def _estate(get) -> dict:
    """Where the bot looks: regions, accounts, roles."""
    regions = _csv(get("ECR_COST_REGIONS"))
    if "all" in regions and regions != ("all",):
        raise ConfigError("ECR_COST_REGIONS: `all` (every region enabled in each account) stands alone")
    for region in regions:
        if region != "all" and not _REGION.match(region):
            raise ConfigError(f"ECR_COST_REGIONS: {region!r} is not an AWS region name (like us-east-1), nor `all`")
    runtime_regions = _csv(get("ECR_COST_RUNTIME_REGIONS"))
    for region in runtime_regions:
        if not _REGION.match(region):
            raise ConfigError(f"ECR_COST_RUNTIME_REGIONS: {region!r} is not an AWS region name (like us-east-1); "
                              f"leave it unset to read every region enabled in each account")
    org_role_name = get("ECR_COST_ORG_ROLE_NAME")
    if org_role_name is not None and not _ROLE_NAME.match(org_role_name):
        raise ConfigError(f"ECR_COST_ORG_ROLE_NAME: {org_role_name!r} is not an IAM role name (like EcrCostReader)")
    accounts, exclude_accounts = _csv(get("ECR_COST_ACCOUNTS")), _csv(get("ECR_COST_EXCLUDE_ACCOUNTS"))
    for name, ids in (("ECR_COST_ACCOUNTS", accounts), ("ECR_COST_EXCLUDE_ACCOUNTS", exclude_accounts)):
        for account_id in ids:
            if not re.fullmatch(r"\d{12}", account_id):
                raise ConfigError(f"{name}: {account_id!r} is not an AWS account ID (12 digits)")
    role_arns = _csv(get("ECR_COST_ROLE_ARNS"))
    for arn in role_arns:
        if not _ROLE_ARN.match(arn):
            raise ConfigError(f"ECR_COST_ROLE_ARNS: {arn!r} is not an IAM role ARN "
                              "(arn:aws:iam::123456789012:role/name)")
    return dict(regions=regions, runtime_regions=runtime_regions, org_role_name=org_role_name, accounts=accounts,
                exclude_accounts=exclude_accounts, role_arns=role_arns)


def _slack(get) -> dict:
    """Slack's tokens, URL, report channel and the bot's admins."""
    admins = _csv(get("ECR_COST_ADMINS"))
    for admin in admins:
        if not SLACK_USER_ID.match(admin):
            raise ConfigError(f"ECR_COST_ADMINS: {admin!r} is not a Slack user ID (like U012AB3CD)")
    slack_api_url = get("SLACK_API_URL") or "https://slack.com/api/"
    if not re.match(r"^https?://[^\s/]+", slack_api_url):
        raise ConfigError(f"SLACK_API_URL: expected an http(s) URL, got {slack_api_url!r}")
    if not slack_api_url.endswith("/"):
        slack_api_url += "/"
    for name, prefix in (("SLACK_BOT_TOKEN", "xoxb-"), ("SLACK_APP_TOKEN", "xapp-")):
        value = get(name)
        if value and not value.startswith(prefix):
            raise ConfigError(f"{name}: expected a token starting with {prefix!r}")
    channel = get("ECR_COST_REPORT_CHANNEL")
    if channel and not re.match(r"^[CGD][A-Z0-9]{2,}$", channel):
        raise ConfigError(f"ECR_COST_REPORT_CHANNEL: expected a channel ID (like C012AB3CD), got {channel!r}")
    return dict(slack_bot_token=get("SLACK_BOT_TOKEN"), slack_signing_secret=get("SLACK_SIGNING_SECRET"),
                slack_app_token=get("SLACK_APP_TOKEN"), slack_api_url=slack_api_url, report_channel=channel,
                admins=admins)


def _sweep(get, timezone: str) -> dict:
    schedule = get("ECR_COST_SWEEP_SCHEDULE") or SWEEP_SCHEDULE
    _cron("ECR_COST_SWEEP_SCHEDULE", schedule, timezone)
    return dict(sweep_schedule=schedule,
                sweep_grace_hours=_number("ECR_COST_SWEEP_GRACE_HOURS", get("ECR_COST_SWEEP_GRACE_HOURS") or "168",
                                          float, 0.0, 24 * 3650),
                sweep_max_per_run=_number("ECR_COST_SWEEP_MAX_PER_RUN", get("ECR_COST_SWEEP_MAX_PER_RUN") or "1000",
                                          int, 1, 1_000_000))
