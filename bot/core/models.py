"""Plain data the whole bot passes around, and the few constants every layer shares. No I/O here."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .billing import RepositoryBill

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")  # what an owner tag entry or an admin must look like
SNOOZE = timedelta(days=30)  # "Not now" keeps nudges away this long
PREVIOUS_PERIOD = timedelta(days=6)  # "last week" is the newest complete scan at least this much older
EXEMPT_TAG = "ecr-cost-exempt"  # a repository tag that exempts it from the base policy; its value is the reason
EXEMPTION_REASONS = {"compliance": "compliance", "data_retention": "data retention", "other": "other"}
ADOPTIONS = ("adopted", "tuned")  # the decisions that put a policy the bot chose: what rollbacks undo


@dataclass(frozen=True)
class Image:
    """One entry of DescribeImages (an image manifest or a manifest list / index)."""

    digest: str
    tags: tuple[str, ...]
    listed_bytes: int  # imageSizeInBytes; 0 when AWS gives none
    pushed_at: datetime | None
    last_pulled_at: datetime | None = None
    media_type: str | None = None
    status: str = "ACTIVE"  # ACTIVE | ARCHIVED | ACTIVATING
    archived_at: datetime | None = None


@dataclass(frozen=True)
class Manifest:
    """What the cost model needs from a manifest: its blobs, or its children when it is an index.

    ``problem`` is set when the manifest could not be read (not JSON, schema 1, ...);
    such an image is then priced by its imageSizeInBytes instead.
    """

    digest: str
    media_type: str | None
    blobs: tuple[tuple[str, int], ...] = ()  # (digest, size) of config + layers
    children: tuple[str, ...] = ()  # child manifest digests of an index / manifest list
    problem: str | None = None


@dataclass(frozen=True)
class RepositoryRef:
    account_id: str
    region: str
    name: str
    arn: str


@dataclass
class RepositoryInventory:
    """Everything the collector read about one repository."""

    ref: RepositoryRef
    created_at: datetime | None
    tags: dict[str, str]
    lifecycle_policy: str | None
    images: list[Image]
    manifests: dict[str, Manifest]  # every manifest reachable from ``images``
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RepositoryCost:
    """One row of the ranking: the contract's `repositories[]` entry."""

    repository: str
    account_id: str
    region: str
    arn: str
    image_count: int
    tagged_image_count: int
    stored_bytes: int
    listed_bytes: int
    monthly_cost_usd: float
    last_pushed_at: datetime | None
    last_pulled_at: datetime | None
    unused: bool
    has_lifecycle_policy: bool
    lifecycle_policy: str | None
    owners: tuple[str, ...]
    tags: dict[str, str]
    account_name: str | None = None  # its name in the AWS Organization, when known
    created_at: datetime | None = None  # the repository's createdAt (the watch tells new repositories by it)

    @property
    def untagged_image_count(self) -> int:
        return self.image_count - self.tagged_image_count


@dataclass(frozen=True)
class ScanProblem:
    """An account, region or repository the scan could not read completely."""

    account_id: str
    region: str
    message: str
    repository: str | None = None


@dataclass
class ScanResult:
    generated_at: datetime
    price_per_gb_month: float
    repositories: list[RepositoryCost]  # ranked
    errors: list[ScanProblem]  # parts of the estate missing or inexact -> partial
    warnings: list[ScanProblem]  # complete data, but something an owner should fix
    api_calls: int = 0
    manifests_fetched: int = 0
    scan_id: int | None = None

    @property
    def partial(self) -> bool:
        return bool(self.errors)


@dataclass(frozen=True)
class PolicyDecision:
    """One entry of the decision log: an adoption, a rollback, a decline or a snooze."""

    id: int | None
    repository: str
    account_id: str
    region: str
    arn: str
    # adopted | tuned | rolled_back | declined | snoozed | exemption_lifted | deleted | claimed | claim_rejected |
    # sweep | sweep_enabled | sweep_disabled | sweep_kept
    action: str
    user_id: str
    source: str  # slack | cli
    at: datetime
    policy_before: str | None
    policy_after: str | None
    projected_monthly_savings_usd: float | None
    backup_id: int | None = None
    owners_checked: tuple[str, ...] = ()  # the owner tag as AWS had it when the change was authorised
    undoes: int | None = None  # a rollback: the id of the adoption it undid
    repository_created_at: datetime | None = None  # tells a repository from one deleted and re-created by name
    reason: str | None = None  # a decline: compliance | data_retention | other
    note: str | None = None  # the person's own words (a decline), or what was done (a claim, a deletion)
    tag_before: str | None = None  # a limit set: the ecr-cost-limit-usd tag's value before (None: no tag)
    tag_after: str | None = None
    images: str | None = None  # a sweep: JSON list of the images deleted (digest, tags, manifest, times, size)


@dataclass(frozen=True)
class Exemption:
    """Why a repository is left out of the base policy's nudges and savings: an owner's decline, or its tag."""

    reason: str
    note: str | None
    source: str  # "decision" | "tag"
    by: str | None = None  # who declined (None: the tag)
    at: datetime | None = None

    @property
    def text(self) -> str:
        reason = EXEMPTION_REASONS.get(self.reason, self.reason)
        said = f": {self.note}" if self.note else ""
        return f"{reason}{said}" + (f" (tag {EXEMPT_TAG})" if self.source == "tag" else "")


@dataclass(frozen=True)
class PolicySavings:
    """What adopting a policy through the bot does, the one figure every surface states: its protected form, every
    in-use image kept (``expiring_count``, ``bytes_freed``, ``monthly_usd``); and what the policy as written would do,
    which a surface may mention only on a line that says so."""

    image_count: int
    expiring_count: int
    bytes_freed: int
    monthly_usd: float
    written_expiring_count: int
    written_in_use_expiring: int  # of the images the policy as written would expire, how many run somewhere
    written_bytes_freed: int
    written_monthly_usd: float
    in_use_checked: bool = True  # False: no in-use check was made; the adopted figures are the written ones

    @property
    def differs(self) -> bool:
        """Whether the policy as written would do something else than adopting does."""
        return (self.written_expiring_count, self.written_bytes_freed) != (self.expiring_count, self.bytes_freed)


@dataclass(frozen=True)
class RepositoryView:
    """Everything the detail of one repository shows."""

    row: RepositoryCost
    label: str  # the shortest unique name: name, region/name or ARN
    rank: int
    rank_of: int
    lifecycle_status: str  # none | base | custom (N rules)
    expiring_count: int | None  # what the base policy would expire; None when unknown
    bytes_freed: int | None
    savings_usd: float | None
    change_usd: float | None  # since the previous period
    last_decision: PolicyDecision | None
    adopted: bool  # an adoption through the bot is in force: Roll back can undo it
    scanned_at: datetime
    previous: RepositoryCost | None = None  # the same repository in last period's scan
    in_use_count: int | None = None  # images running somewhere (None: not checked)
    in_use_kept: int = 0  # of them, how many the base policy as written would have expired: adoption keeps them
    in_use_where: tuple[str, ...] = ()  # e.g. "ecs-service prod/api", "lambda thumbnails:live"
    in_use_blind: tuple[str, ...] = ()  # runtimes that could not be read: the in-use check is partial
    exemption: Exemption | None = None
    billed: RepositoryBill | None = None  # billed cost per day from the CUR, when one is configured
    savings: PolicySavings | None = None  # what adopting the base policy does (and the policy as written would)

    @property
    def may_delete(self) -> bool:
        """Unused, and no image runs anywhere the bot could see, with nothing it could not see."""
        return self.row.unused and self.in_use_count == 0 and not self.in_use_blind
