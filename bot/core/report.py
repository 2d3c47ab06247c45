"""The weekly report's model: from the latest scan, last period's and the decision log. Pure."""
from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .analysis import Summary, display_names, exemption_of, summarize
from .billing import BillingSummary
from .cost import monthly_cost
from .models import ADOPTIONS, Exemption, PolicyDecision, PolicySavings, RepositoryCost, ScanResult
from .tuning import lifecycle_status
from .watch import over_limit

TOP = 10
GROWTH_TOP = 3  # the repositories whose new layers cost the most per week, named in one line


@dataclass(frozen=True)
class ReportLine:
    rank: int
    row: RepositoryCost
    label: str
    change_usd: float | None  # None: not in last period's scan
    policy: str  # none | base | custom (N rules)


@dataclass(frozen=True)
class RealisedSaving:
    """An adoption in force: the repository's stored cost in the last scan before it against now (the basis of the
    projection: stored bytes at the configured price), the projection recorded at adoption (what its protected form
    would free), and what the bill says (the CUR's storage per day for this repository, before and after)."""

    label: str
    adopted_by: str
    adopted_at: datetime
    cost_at_adoption_usd: float
    cost_now_usd: float
    projected_usd: float | None = None
    billed_usd: float | None = None  # billed storage saved, per month (None: no per-repository bill yet)

    @property
    def saved_usd(self) -> float:
        return self.cost_at_adoption_usd - self.cost_now_usd


@dataclass(frozen=True)
class ExemptLine:
    label: str
    row: RepositoryCost
    exemption: Exemption


@dataclass(frozen=True)
class Growth:
    """A repository's new layers per week (last 28 days), and what they add to the monthly bill each week."""

    label: str
    new_bytes_per_week: int
    monthly_usd_added_per_week: float


@dataclass(frozen=True)
class Swept:
    """What the sweep deleted in a repository this week (images nobody pulled for N days)."""

    label: str
    images: int
    freed_bytes: int
    monthly_usd: float


@dataclass(frozen=True)
class WeeklyReport:
    period_start: datetime
    generated_at: datetime
    summary: Summary
    previous_total_usd: float | None
    top: list[ReportLine]
    unused: list[str]  # labels, costliest first
    without_policy_count: int  # exempt repositories aside
    base_policy_savings_usd: float  # what adopting the base policy frees across the repositories without one
    exempt: list[ExemptLine]  # costliest first
    unowned: list[tuple[str, RepositoryCost]]  # (label, row) without a valid owner tag, costliest first
    realised: list[RealisedSaving]
    partial: bool
    errors: list[str]
    trend: list[tuple[datetime, float]]  # (scan time, total monthly cost), oldest first
    growth: list[Growth] = field(default_factory=list)  # costliest new layers per week first
    billing: BillingSummary | None = None  # the bill beside the estimate (None: not asked)
    base_policy_savings: list[tuple[str, PolicySavings]] = field(default_factory=list)  # (label, what adopting does)
    over_limit: list[tuple[str, RepositoryCost, float]] = field(default_factory=list)  # (label, row, limit USD)
    swept: list[Swept] = field(default_factory=list)  # most saved first

    @property
    def change_usd(self) -> float | None:
        return None if self.previous_total_usd is None else self.summary.monthly_cost_usd - self.previous_total_usd

    @property
    def realised_total_usd(self) -> float:
        return sum(s.saved_usd for s in self.realised)


def build_report(scan: ScanResult, previous: ScanResult | None, decisions: Sequence[PolicyDecision],
                 cost_at_adoption: Mapping[int, float], base_savings: Mapping[str, PolicySavings], base_policy: dict,
                 trend: Sequence[tuple[datetime, float]], period_start: datetime,
                 growth: Mapping[str, int] | None = None, billing: BillingSummary | None = None,
                 swept: Mapping[str, tuple[str, int, int, float]] | None = None) -> WeeklyReport:
    """``cost_at_adoption``: decision id -> the repository's monthly cost in the last scan before it;
    ``base_savings``: ARN -> what adopting the base policy does there (repositories without a policy: its
    protected form, in-use images kept);
    ``growth``: ARN -> bytes of new layers per week; ``swept``: ARN -> (name, images, bytes, USD/month) the sweep
    deleted this week."""
    ranked = scan.repositories
    labels = display_names(ranked)
    before = {r.arn: r for r in previous.repositories} if previous else {}
    latest_by_repo: dict[str, PolicyDecision] = {}
    history: dict[str, list[PolicyDecision]] = {}
    for decision in decisions:
        history.setdefault(decision.arn, []).append(decision)
        if decision.action in (*ADOPTIONS, "rolled_back"):
            latest_by_repo[decision.arn] = decision
    tuned = {arn: d.policy_after for arn, d in latest_by_repo.items() if d.action == "tuned"}
    top = [ReportLine(i, r, labels[r.arn],
                      None if r.arn not in before else r.monthly_cost_usd - before[r.arn].monthly_cost_usd,
                      lifecycle_status(r.lifecycle_policy, base_policy, tuned.get(r.arn)))
           for i, r in enumerate(ranked[:TOP], 1)]
    current = {r.arn: r for r in ranked}
    billed = {(e.label, e.adopted_at): e for e in (billing.adoptions if billing else []) if e.scope == "repository"}
    realised = [RealisedSaving(labels[d.arn], d.user_id, d.at, cost_at_adoption[d.id], current[d.arn].monthly_cost_usd,
                               d.projected_monthly_savings_usd, billed_per_month(billed.get((labels[d.arn], d.at))))
                for d in latest_by_repo.values()
                if d.id is not None and d.action in ADOPTIONS and d.arn in current and d.id in cost_at_adoption]
    exempt = [ExemptLine(labels[r.arn], r, found) for r in ranked
              if (found := exemption_of(r.tags, history.get(r.arn, []))) is not None]
    exempt_arns = {line.row.arn for line in exempt}
    without = [r for r in ranked if not r.has_lifecycle_policy and r.arn not in exempt_arns]
    return WeeklyReport(
        period_start=period_start, generated_at=scan.generated_at, summary=summarize(ranked),
        previous_total_usd=sum(r.monthly_cost_usd for r in previous.repositories) if previous else None,
        top=top, unused=[labels[r.arn] for r in ranked if r.unused], without_policy_count=len(without),
        base_policy_savings_usd=sum(base_savings[r.arn].monthly_usd for r in without if r.arn in base_savings),
        base_policy_savings=sorted(((labels[r.arn], base_savings[r.arn]) for r in without if r.arn in base_savings),
                                   key=lambda pair: (-pair[1].monthly_usd, pair[0])), exempt=exempt,
        unowned=[(labels[r.arn], r) for r in ranked if not r.owners],
        realised=sorted(realised, key=lambda s: -s.saved_usd), partial=scan.partial,
        errors=[f"{p.account_id} {p.region}: {p.message}" for p in scan.errors], trend=list(trend),
        growth=fastest_growing(ranked, labels, growth or {}, scan.price_per_gb_month),
        billing=billing,
        over_limit=sorted(((labels[r.arn], r, over.limit_usd) for r in ranked if (over := over_limit(r)[0])),
                          key=lambda x: (-(x[1].monthly_cost_usd - x[2]), x[0])),
        swept=sorted((Swept(labels.get(arn, name), n, freed, usd)
                      for arn, (name, n, freed, usd) in (swept or {}).items() if n),
                     key=lambda s: (-s.monthly_usd, s.label)))


def billed_per_month(effect) -> float | None:
    """Billed storage saved per month: the repository's billed storage per day before the adoption minus after it,
    over the days of the month it was adopted in (as AWS prorates GB-months)."""
    if effect is None:
        return None
    return (effect.before_daily_usd - effect.after_daily_usd) * calendar.monthrange(effect.adopted_at.year,
                                                                                    effect.adopted_at.month)[1]


def fastest_growing(ranked: Sequence[RepositoryCost], labels: Mapping[str, str], growth: Mapping[str, int],
                    price_per_gb_month: float) -> list[Growth]:
    grown = sorted(((growth[r.arn], labels[r.arn]) for r in ranked if growth.get(r.arn, 0) > 0),
                   key=lambda pair: (-pair[0], pair[1]))
    return [Growth(label, new, monthly_cost(new, price_per_gb_month)) for new, label in grown[:GROWTH_TOP]]


