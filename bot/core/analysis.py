"""Analysis over priced repositories: ranking, totals, median, lookup by name."""
from __future__ import annotations

import difflib
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import AmbiguousOrUnknownName, UnknownAccount
from .models import ADOPTIONS, EXEMPT_TAG, Exemption, PolicyDecision, RepositoryCost


def rank(rows: Sequence[RepositoryCost]) -> list[RepositoryCost]:
    """Stored bytes descending, then repository name ascending (then region, account for ties)."""
    return sorted(rows, key=lambda r: (-r.stored_bytes, r.repository, r.region, r.account_id))


@dataclass(frozen=True)
class AccountTotal:
    account_id: str
    account_name: str | None
    repository_count: int
    stored_bytes: int
    monthly_cost_usd: float


@dataclass(frozen=True)
class Summary:
    repository_count: int
    stored_bytes: int
    listed_bytes: int
    monthly_cost_usd: float
    median_monthly_cost_usd: float
    above_median: tuple[str, ...]  # repository names, in rank order
    without_policy: int
    unused: int
    accounts: tuple[AccountTotal, ...] = ()  # costliest first


def summarize(ranked: Sequence[RepositoryCost]) -> Summary:
    costs = [r.monthly_cost_usd for r in ranked]
    median = statistics.median(costs) if costs else 0.0
    return Summary(
        repository_count=len(ranked),
        stored_bytes=sum(r.stored_bytes for r in ranked),
        listed_bytes=sum(r.listed_bytes for r in ranked),
        monthly_cost_usd=sum(costs),
        median_monthly_cost_usd=median,
        above_median=tuple(r.repository for r in ranked if r.monthly_cost_usd > median),
        without_policy=sum(1 for r in ranked if not r.has_lifecycle_policy),
        unused=sum(1 for r in ranked if r.unused),
        accounts=account_totals(ranked),
    )


def account_totals(rows: Sequence[RepositoryCost]) -> tuple[AccountTotal, ...]:
    """Each account's repositories, bytes and cost: costliest first, then by account ID."""
    grouped: dict[str, list[RepositoryCost]] = {}
    for row in rows:
        grouped.setdefault(row.account_id, []).append(row)
    totals = [AccountTotal(account_id, next((r.account_name for r in mine if r.account_name), None), len(mine),
                           sum(r.stored_bytes for r in mine), sum(r.monthly_cost_usd for r in mine))
              for account_id, mine in grouped.items()]
    return tuple(sorted(totals, key=lambda t: (-t.monthly_cost_usd, t.account_id)))


def match_account(accounts: Mapping[str, str | None], query: str) -> str:
    """The account ID ``query`` names among ``accounts`` (ID -> name or None): an ID, or a name (case-insensitive,
    unique). Raises UnknownAccount with the closest candidates."""
    wanted = query.strip()
    exact = [a for a, name in accounts.items() if a == wanted or (name or "").lower() == wanted.lower()]
    if len(exact) == 1:
        return exact[0]
    names = [name or account_id for account_id, name in sorted(accounts.items())]
    raise UnknownAccount(query, exact or difflib.get_close_matches(wanted, names, n=5, cutoff=0.5))


def find_account(rows: Sequence[RepositoryCost], query: str) -> str:
    """The account ID ``query`` names: an account ID, or an account name (case-insensitive, unique)."""
    totals = account_totals(rows)
    wanted = query.strip()
    exact = [t.account_id for t in totals if t.account_id == wanted or (t.account_name or "").lower() == wanted.lower()]
    if len(exact) == 1:
        return exact[0]
    names = [t.account_name or t.account_id for t in totals]
    raise UnknownAccount(query, exact or difflib.get_close_matches(wanted, names, n=5, cutoff=0.5))


def display_names(rows: Sequence[RepositoryCost]) -> dict[str, str]:
    """ARN -> the shortest name that is unique in the estate: `name`, `region/name`, or the ARN."""
    by_name = Counter(r.repository for r in rows)
    by_region_name = Counter((r.region, r.repository) for r in rows)
    names = {}
    for r in rows:
        if by_name[r.repository] == 1:
            names[r.arn] = r.repository
        elif by_region_name[(r.region, r.repository)] == 1:
            names[r.arn] = f"{r.region}/{r.repository}"
        else:
            names[r.arn] = r.arn
    return names


def find_repository(rows: Sequence[RepositoryCost], query: str) -> RepositoryCost:
    """Resolves `name`, `region/name` or an ARN; raises AmbiguousOrUnknownName with "did you mean" candidates."""
    query = query.strip()
    if query.startswith("arn:"):
        matches = [r for r in rows if r.arn == query]
    else:
        matches = [r for r in rows if r.repository == query]
        if not matches and "/" in query:
            region, _, name = query.partition("/")
            matches = [r for r in rows if r.region == region and r.repository == name]
    if len(matches) == 1:
        return matches[0]
    labels = display_names(rows)
    if matches:
        raise AmbiguousOrUnknownName(f"{query!r} names {len(matches)} repositories; say which one",
                           sorted(labels[r.arn] for r in matches))
    pool = sorted({labels[r.arn] for r in rows} | {r.repository for r in rows})
    close = difflib.get_close_matches(query, pool, n=5, cutoff=0.5)
    if not close:
        lowered = query.lower()
        close = [name for name in pool if lowered and lowered in name.lower()][:5]
    raise AmbiguousOrUnknownName(f"no repository named {query!r}", close)


def exemption_of(tags: dict[str, str], decisions: Sequence[PolicyDecision]) -> Exemption | None:
    """The repository's exemption: its ``ecr-cost-exempt`` tag (declared in infrastructure code), else an owner's
    decline not since lifted by an admin nor followed by an adoption. ``decisions``: its log, oldest first."""
    if EXEMPT_TAG in tags:
        return Exemption(tags[EXEMPT_TAG].strip() or "declared by tag", None, "tag")
    latest = next((d for d in reversed(decisions) if d.action in ("declined", "exemption_lifted", *ADOPTIONS)), None)
    if latest is None or latest.action != "declined":
        return None
    return Exemption(latest.reason or "no reason given", latest.note, "decision", latest.user_id, latest.at)
