"""The daily watch, pure: which repositories grew between two scans, which cost more than their limit, which are new
without a lifecycle policy, and which have a policy that expires nothing while stale images pile up.

Data in, findings out; the service (bot/watch.py) reads the scans, the image lists and the manifests and feeds them
here one repository at a time.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .cost import GIB, monthly_cost, stored_bytes
from .lifecycle import evaluate
from .models import Image, Manifest, RepositoryCost, ScanProblem
from .size import config_of, layers_of, pushes

LIMIT_TAG = "ecr-cost-limit-usd"  # a repository's monthly limit in USD
STALE_DAYS = 90  # an image neither pulled nor pushed for this long is stale
TOP_NEW_LAYERS = 5  # new layers named per grown repository
FINDING_KINDS = ("growth", "over_limit", "new_without_policy", "ineffective_policy")


# -- limits -------------------------------------------------------------------------------------------------------

def parse_limit(value: str | None) -> tuple[float | None, str | None]:
    """(the limit in USD, a problem): a tag value such as ``5``, ``5.00`` or ``$5``. No tag: (None, None)."""
    if value is None:
        return None, None
    text = value.strip().removeprefix("$").replace(",", "").strip()
    try:
        limit = float(text)
    except ValueError:
        return None, f"its {LIMIT_TAG} tag is not a number ({value!r}); write the monthly limit in USD, like 5.00"
    if not math.isfinite(limit) or limit <= 0:
        return None, f"its {LIMIT_TAG} tag must be a positive number of USD per month, got {value!r}"
    return limit, None


def limit_of(row: RepositoryCost) -> tuple[float | None, str | None]:
    return parse_limit(row.tags.get(LIMIT_TAG))


def format_limit_value(limit: float) -> str:
    """A limit as the bot writes it into the tag."""
    return f"{limit:.2f}"


# -- findings -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewLayer:
    digest: str
    bytes: int
    created_by: str | None  # the Dockerfile step, when its image's config blob was read


@dataclass(frozen=True)
class Growth:
    row: RepositoryCost
    bytes_before: int
    monthly_cost_usd_before: float
    pushes: int  # images pushed between the scans
    new_bytes: int  # blobs those pushes brought that the repository did not hold before
    top_layers: tuple[NewLayer, ...]


@dataclass(frozen=True)
class OverLimit:
    row: RepositoryCost
    limit_usd: float
    source: str = "tag"


@dataclass(frozen=True)
class NewRepository:
    row: RepositoryCost
    created_by: str | None  # who created it (CloudTrail), else the owner tag
    created_by_source: str | None  # cloudtrail | owner tag | None


@dataclass(frozen=True)
class IneffectivePolicy:
    row: RepositoryCost
    stale_images: int
    stale_bytes: int
    stale_monthly_usd: float


Finding = OverLimit | Growth | NewRepository | IneffectivePolicy  # what the watch reports, each about one row


@dataclass
class WatchResult:
    generated_at: datetime
    previous_at: datetime | None
    partial: bool
    errors: list[ScanProblem]
    growth: list[Growth] = field(default_factory=list)
    over_limit: list[OverLimit] = field(default_factory=list)
    new_without_policy: list[NewRepository] = field(default_factory=list)
    ineffective_policies: list[IneffectivePolicy] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # malformed limit tags, unreadable CloudTrail, ...
    notes: list[str] = field(default_factory=list)  # e.g. "no previous scan"

    @property
    def finding_count(self) -> int:
        return len(self.growth) + len(self.over_limit) + len(self.new_without_policy) + len(self.ineffective_policies)


def finding_key(kind: str, row: RepositoryCost) -> str:
    return f"{kind}:{row.arn}"


# -- the comparisons ----------------------------------------------------------------------------------------------

def unreadable(errors: Iterable[ScanProblem]) -> tuple[set[tuple[str, str]], set[str], set[tuple[str, str, str]]]:
    """What a partial scan could not read: (account, region) pairs, whole accounts, single repositories."""
    regions, accounts, repositories = set(), set(), set()
    for problem in errors:
        if problem.repository is not None:
            repositories.add((problem.account_id, problem.region, problem.repository))
        elif problem.region == "*":
            accounts.add(problem.account_id)
        else:
            regions.add((problem.account_id, problem.region))
    return regions, accounts, repositories


class Blind:
    """The repositories a scan (or its predecessor) could not read completely: never grown, never new."""

    def __init__(self, *error_lists: Iterable[ScanProblem]):
        self.regions, self.accounts, self.repositories = unreadable(p for errors in error_lists for p in errors)

    def __contains__(self, row: RepositoryCost) -> bool:
        return (row.account_id in self.accounts or (row.account_id, row.region) in self.regions
                or (row.account_id, row.region, row.repository) in self.repositories)


def grew(before: int, after: int, pct: float, min_bytes: int) -> bool:
    """Both: more than ``pct`` percent and more than ``min_bytes`` bytes."""
    added = after - before
    return added > min_bytes and added * 100 > pct * before


def growth(row: RepositoryCost, before: tuple[int, float], since: datetime, images: Sequence[Image],
           manifests: Mapping[str, Manifest], earlier_blobs: set[str] | None,
           steps: Mapping[str, Sequence[str | None] | None]) -> Growth:
    """What the pushes since ``since`` brought. ``earlier_blobs``: the blobs the repository held at the previous scan
    (None when its image list is gone: the images of this scan pushed before ``since`` stand in for it);
    ``before``: (stored bytes, monthly cost) at the previous scan; ``steps``: config digest -> the Dockerfile step of
    each layer."""
    found, _ = pushes(images, manifests)
    recent = [p for p in found if p.image.pushed_at is not None and p.image.pushed_at > since]
    if earlier_blobs is None:
        earlier_blobs = {d for p in found if p not in recent for d in p.blobs}
    sizes: dict[str, int] = {}
    step_of: dict[str, str | None] = {}
    configs: set[str] = set()
    for push in recent:
        for leaf in push.leaves:
            configs.add(config_of(leaf))
            known = steps.get(config_of(leaf))
            layers = layers_of(leaf)
            for position, (digest, _size) in enumerate(layers):
                if known is not None and len(known) == len(layers) and known[position]:
                    step_of.setdefault(digest, known[position])
        for digest, size in push.blobs.items():
            if digest not in earlier_blobs:
                sizes[digest] = size
    new_layers = sorted(((d, s) for d, s in sizes.items() if d not in configs), key=lambda pair: (-pair[1], pair[0]))
    top = tuple(NewLayer(d, s, step_of.get(d)) for d, s in new_layers[:TOP_NEW_LAYERS])
    return Growth(row, before[0], before[1], len(recent), sum(sizes.values()), top)


def configs_of_recent(images: Sequence[Image], manifests: Mapping[str, Manifest], since: datetime,
                      limit: int = 3) -> list[str]:
    """Config digests of the largest pushes since ``since``: whose history names the new layers' steps."""
    found, _ = pushes(images, manifests)
    recent = sorted((p for p in found if p.image.pushed_at is not None and p.image.pushed_at > since),
                    key=lambda p: (-p.bytes, p.image.digest))[:limit]
    return list(dict.fromkeys(config_of(leaf) for p in recent for leaf in p.leaves))


def over_limit(row: RepositoryCost) -> tuple[OverLimit | None, str | None]:
    """(the finding when the repository costs more than its limit; a warning for a malformed tag)."""
    limit, problem = limit_of(row)
    if problem is not None:
        return None, f"{row.repository} ({row.account_id} {row.region}): {problem}"
    if limit is not None and row.monthly_cost_usd > limit:
        return OverLimit(row, limit), None
    return None, None


def is_new(row: RepositoryCost, since: datetime) -> bool:
    """Created after ``since`` and without a lifecycle policy."""
    return row.created_at is not None and row.created_at > since and not row.has_lifecycle_policy


def stale_images(images: Sequence[Image], manifests: Mapping[str, Manifest], now: datetime,
                 days: int = STALE_DAYS) -> list[Image]:
    """Images neither pulled nor pushed in the last ``days`` days (a child of a list that is not stale is not)."""
    cutoff = now - timedelta(days=days)

    def stale(image: Image) -> bool:
        activity = [t for t in (image.pushed_at, image.last_pulled_at) if t is not None]
        return bool(activity) and max(activity) < cutoff

    found = [i for i in images if stale(i)]
    if not found:
        return []
    fresh_children = {c for i in images if not stale(i) and i.digest in manifests for c in manifests[i.digest].children}
    return [i for i in found if i.digest not in fresh_children]


def ineffective(row: RepositoryCost, policy: Mapping, images: Sequence[Image], manifests: Mapping[str, Manifest],
                now: datetime, price_per_gb_month: float, days: int = STALE_DAYS) -> IneffectivePolicy | None:
    """A valid policy that acts on no image while the repository holds stale ones: what they cost."""
    old = stale_images(images, manifests, now, days)
    if not old or evaluate(images, policy, now, manifests):
        return None
    gone = {i.digest for i in old}
    freed = stored_bytes(images, manifests) - stored_bytes([i for i in images if i.digest not in gone], manifests)
    return IneffectivePolicy(row, len(old), freed, monthly_cost(freed, price_per_gb_month))


def growth_threshold_bytes(min_gb: float) -> int:
    return int(min_gb * GIB)


def sort_findings(result: WatchResult) -> None:
    """Each list by what it costs, largest first (names break ties)."""
    result.growth.sort(key=lambda g: (-(g.row.stored_bytes - g.bytes_before), g.row.repository, g.row.arn))
    result.over_limit.sort(key=lambda o: (-(o.row.monthly_cost_usd - o.limit_usd), o.row.repository, o.row.arn))
    result.new_without_policy.sort(key=lambda n: (-n.row.stored_bytes, n.row.repository, n.row.arn))
    result.ineffective_policies.sort(key=lambda i: (-i.stale_bytes, i.row.repository, i.row.arn))
