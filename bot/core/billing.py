"""The bill beside the estimate: Cost Explorer's and the CUR's ECR figures, as the report and `billing` show them.

Pure: the adapters (bot/aws/billing.py) return plain rows; everything computed from them is here.
"""
from __future__ import annotations

import calendar
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

STORAGE_SUFFIX = "TimedStorage-ByteHrs"  # storage usage types, e.g. USE1-TimedStorage-ByteHrs (archive too)
CE_SERVICE = "Amazon EC2 Container Registry (ECR)"
CE_DAYS = 35  # one Cost Explorer request covers this many days
WEEK = 7
DIFFERENCE_THRESHOLD_PCT = 10.0  # above this the report gives the likely reasons
ADOPTION_LAG_DAYS = 2  # the bill shows a change after about two days
CE_PERMISSION = "ce:GetCostAndUsage"


def is_storage(usage_type: str | None) -> bool:
    return usage_type is not None and usage_type.endswith(STORAGE_SUFFIX)


def complete_days(today: date, count: int) -> list[date]:
    """The ``count`` complete UTC days ending yesterday, oldest first."""
    return [today - timedelta(days=count - i) for i in range(count)]


def daily_estimate(monthly_usd: float, day: date) -> float:
    """A month's cost spread over its days, as AWS prorates GB-months by the hours of the month."""
    return monthly_usd / calendar.monthrange(day.year, day.month)[1]


def missing_days(days: Iterable[date], present: Iterable[date]) -> list[date]:
    seen = set(present)
    return [d for d in days if d not in seen]


def days_text(days: Sequence[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:10])
    return shown + (f" and {len(days) - 10} more" if len(days) > 10 else "")


# -- the service level: Cost Explorer (or the CUR summed over the service) ---------------------------------------


@dataclass(frozen=True)
class CostLine:
    """One day's cost of one usage type (Cost Explorer's group, or the CUR's rows summed)."""

    day: date
    usage_type: str
    usd: float
    currency: str


@dataclass(frozen=True)
class ServiceBill:
    """ECR's daily bill: storage and everything else, per UTC day present in the data."""

    source: str  # cost-explorer | cur
    currency: str | None
    storage: dict[date, float]
    other: dict[date, float]
    notes: tuple[str, ...] = ()
    repository_storage: dict[str, dict[date, float]] = field(default_factory=dict)  # ARN -> day -> USD (CUR only)


def choose_currency(currencies: Counter) -> tuple[str | None, list[str]]:
    """The currency most lines are in, and a note naming the others (their lines are left out)."""
    if not currencies:
        return None, []
    chosen = currencies.most_common(1)[0][0]
    others = sorted(c for c in currencies if c != chosen)
    if not others:
        return chosen, []
    return chosen, [f"the bill mixes currencies ({', '.join(sorted(currencies))}): figures are in {chosen}; "
                    f"the lines in {', '.join(others)} are left out"]


def cost_explorer_lines(pages: Iterable[Mapping]) -> list[CostLine]:
    """GetCostAndUsage pages (DAILY, grouped by USAGE_TYPE) -> cost lines."""
    lines = []
    for page in pages:
        for period in page.get("ResultsByTime", []):
            day = date.fromisoformat(period["TimePeriod"]["Start"][:10])
            for group in period.get("Groups", []):
                cost = group.get("Metrics", {}).get("UnblendedCost", {})
                lines.append(CostLine(day, (group.get("Keys") or [""])[0], float(cost.get("Amount") or 0),
                                      cost.get("Unit") or "USD"))
    return lines


def service_bill(lines: Iterable[CostLine], source: str,
                 repository_storage: Mapping[str, Mapping[date, float]] | None = None) -> ServiceBill:
    lines = list(lines)
    currency, notes = choose_currency(Counter(line.currency for line in lines))
    storage: dict[date, float] = defaultdict(float)
    other: dict[date, float] = defaultdict(float)
    for line in lines:
        if line.currency == currency:
            (storage if is_storage(line.usage_type) else other)[line.day] += line.usd
    return ServiceBill(source, currency, dict(storage), dict(other), tuple(notes),
                       {arn: dict(days) for arn, days in (repository_storage or {}).items()})


@dataclass(frozen=True)
class AdoptionEffect:
    """Billed storage per day before and after an adoption (service-level, or the repository's with the CUR)."""

    label: str
    adopted_at: datetime
    scope: str  # service | repository
    before_daily_usd: float
    after_daily_usd: float


@dataclass(frozen=True)
class BillingSummary:
    source: str | None  # cost-explorer | cur | None (off or unavailable)
    currency: str | None
    storage_daily: list[tuple[date, float]]  # the last 14 complete days present in the bill, oldest first
    storage_last_7_days_usd: float | None
    storage_previous_7_days_usd: float | None
    other_last_7_days_usd: float | None
    estimate_daily_usd: float | None
    difference_pct: float | None  # billed storage per day against the estimate per day
    reasons: list[str]
    notes: list[str]
    adoptions: list[AdoptionEffect] = field(default_factory=list)

    @property
    def change_usd(self) -> float | None:
        if self.storage_last_7_days_usd is None or self.storage_previous_7_days_usd is None:
            return None
        return self.storage_last_7_days_usd - self.storage_previous_7_days_usd

    @property
    def note(self) -> str | None:
        parts = list(self.notes)
        if self.difference_pct is not None and abs(self.difference_pct) > DIFFERENCE_THRESHOLD_PCT:
            parts.append(f"billed storage is {self.difference_pct:+.0f}% against the estimate; likely: "
                         + "; ".join(self.reasons))
        return ". ".join(parts) or None


def unavailable(note: str, estimate_daily_usd: float | None = None) -> BillingSummary:
    return BillingSummary(None, None, [], None, None, None, estimate_daily_usd, None, [], [note])


def denied_note(source: str = "Cost Explorer") -> str:
    return (f"billing unavailable: the bot may not read {source} (grant {CE_PERMISSION} to its role, and enable "
            f"Cost Explorer in the payer account)")


@dataclass(frozen=True)
class EstateFacts:
    """What the scan knows that explains a gap between the bill and the estimate."""

    partial: bool = False
    price_per_gb_month: float = 0.10
    estimate_change_usd: float | None = None  # monthly estimate now minus a week ago


def reasons_for(difference_pct: float, facts: EstateFacts, missing: Sequence[date]) -> list[str]:
    reasons = []
    if missing:
        reasons.append(f"the bill lacks {len(missing)} day(s) of the last 7 ({days_text(missing)})")
    if difference_pct > 0:
        if facts.partial:
            reasons.append("accounts or regions the scan could not read are billed but not estimated")
        reasons.append("repositories outside the scanned accounts and regions (replicated copies, pull-through "
                       "caches) are billed but not estimated")
        if facts.estimate_change_usd is not None and facts.estimate_change_usd < 0:
            reasons.append("images deleted during the week were billed for the days they were stored")
    else:
        if facts.estimate_change_usd is not None and facts.estimate_change_usd > 0:
            reasons.append("images pushed during the week were billed only from the day they were stored")
        reasons.append("the free tier or credits lower the bill (500 MB-month of private storage is free for new "
                       "accounts)")
    if abs(facts.price_per_gb_month - 0.10) > 1e-9:
        reasons.append(f"ECR_COST_PRICE_PER_GB_MONTH is ${facts.price_per_gb_month:g}, not ECR's $0.10")
    return reasons


def summarize_bill(bill: ServiceBill, today: date, estimate_monthly_usd: float | None,
                   adoptions: Sequence[tuple[str, str, datetime]] = (), facts: EstateFacts = EstateFacts()
                   ) -> BillingSummary:
    """``adoptions``: (label, ARN, adopted at) of the adoptions in force."""
    last, previous = complete_days(today, WEEK), complete_days(today - timedelta(days=WEEK), WEEK)
    notes = list(bill.notes)
    estimate = None if estimate_monthly_usd is None else daily_estimate(estimate_monthly_usd, last[-1])
    if not bill.storage and not bill.other:
        notes.append(f"{'Cost Explorer' if bill.source == 'cost-explorer' else 'the CUR'} has no ECR cost for the "
                     f"last {CE_DAYS} days")
        return BillingSummary(bill.source, bill.currency, [], None, None, None, estimate, None, [], notes)
    missing = missing_days(last, [*bill.storage, *bill.other])
    if missing:
        notes.append(f"the bill has no ECR line for {days_text(missing)}")
    last_total = sum(bill.storage.get(d, 0.0) for d in last)
    present = [d for d in last if d in bill.storage]
    difference = None
    if estimate and present:
        difference = (last_total / len(present) - estimate) / estimate * 100
    reasons = reasons_for(difference, facts, missing) \
        if difference is not None and abs(difference) > DIFFERENCE_THRESHOLD_PCT else []
    return BillingSummary(
        source=bill.source, currency=bill.currency,
        storage_daily=[(d, bill.storage[d]) for d in [*previous, *last] if d in bill.storage],
        storage_last_7_days_usd=last_total,
        storage_previous_7_days_usd=sum(bill.storage.get(d, 0.0) for d in previous),
        other_last_7_days_usd=sum(bill.other.get(d, 0.0) for d in last),
        estimate_daily_usd=estimate, difference_pct=difference, reasons=reasons, notes=notes,
        adoptions=adoption_effects(bill, today, adoptions))


def _mean(series: Mapping[date, float], days: Iterable[date]) -> float | None:
    values = [series[d] for d in days if d in series]
    return sum(values) / len(values) if values else None


def adoption_effects(bill: ServiceBill, today: date, adoptions: Sequence[tuple[str, str, datetime]]
                     ) -> list[AdoptionEffect]:
    """For each adoption at least two days old: billed storage per day over the week before its day, and from two
    days after it to yesterday (at most a week)."""
    effects = []
    for label, arn, adopted_at in adoptions:
        day = adopted_at.date()
        if (today - day).days < ADOPTION_LAG_DAYS + 1:
            continue
        scope, series = ("repository", bill.repository_storage[arn]) if arn in bill.repository_storage \
            else ("service", bill.storage)
        before = _mean(series, [day - timedelta(days=i) for i in range(1, WEEK + 1)])
        after_days = [day + timedelta(days=i) for i in range(ADOPTION_LAG_DAYS, (today - day).days)][-WEEK:]
        after = _mean(series, after_days)
        if before is not None and after is not None:
            effects.append(AdoptionEffect(label, adopted_at, scope, before, after))
    return effects


# -- per repository: the CUR ----------------------------------------------------------------------------------

CUR_COLUMNS = ("line_item_product_code", "line_item_usage_type", "line_item_resource_id", "line_item_unblended_cost",
               "line_item_usage_start_date", "line_item_line_item_type", "line_item_usage_account_id",
               "product_region_code", "line_item_currency_code")


@dataclass(frozen=True)
class CurLine:
    """The CUR's ECR usage summed per resource, account, region, UTC day, storage or not, and currency."""

    day: date
    account_id: str
    region: str
    resource_id: str | None
    storage: bool
    currency: str
    usd: float


def repository_key(resource_id: str | None, account_id: str, region: str) -> tuple[str, str, str] | None:
    """(account, region, name) a CUR resource ID names: a repository ARN, or a bare name in the row's account and
    region. None: not a repository (empty)."""
    if not resource_id:
        return None
    if resource_id.startswith("arn:"):
        parts = resource_id.split(":", 5)
        if len(parts) == 6 and parts[2] == "ecr" and parts[5].startswith("repository/"):
            return parts[4], parts[3], parts[5][len("repository/"):]
        return None
    return account_id, region, resource_id


@dataclass(frozen=True)
class RepositoryBill:
    repository: str
    account_id: str
    region: str
    arn: str | None
    billed_usd: float  # everything ECR billed for it in the period (storage, data transfer, ...)
    billed_daily_usd: float | None  # storage per day: the mean over the last 7 complete days in the data
    estimate_daily_usd: float | None

    @property
    def difference_pct(self) -> float | None:
        if self.billed_daily_usd is None or not self.estimate_daily_usd:
            return None
        return (self.billed_daily_usd - self.estimate_daily_usd) / self.estimate_daily_usd * 100


@dataclass(frozen=True)
class CurBilling:
    source: str
    currency: str | None
    start: date
    end: date  # inclusive
    repositories: list[RepositoryBill]  # billed_usd descending
    unmatched_usd: float
    unmatched: list[tuple[str, float]]  # (resource ID, USD), costliest first
    notes: list[str]

    @property
    def total_usd(self) -> float:
        return sum(r.billed_usd for r in self.repositories) + self.unmatched_usd


@dataclass(frozen=True)
class EstimatedRepository:
    arn: str
    repository: str
    account_id: str
    region: str
    monthly_cost_usd: float


def cur_billing(lines: Iterable[CurLine], repositories: Sequence[EstimatedRepository], start: date, end: date,
                source: str = "cur") -> CurBilling:
    """Per repository from the CUR's lines of the period [start, end]. Lines that name no scanned repository are
    unmatched, never dropped."""
    lines = [line for line in lines if start <= line.day <= end]
    currency, notes = choose_currency(Counter(line.currency for line in lines))
    lines = [line for line in lines if line.currency == currency]
    if not lines:
        notes.append(f"the CUR has no ECR line items between {start} and {end}")
        return CurBilling(source, currency, start, end, [], 0.0, [], notes)
    by_key = {(r.account_id, r.region, r.repository): r for r in repositories}
    days_present = sorted({line.day for line in lines})
    missing = missing_days([start + timedelta(days=i) for i in range((end - start).days + 1)], days_present)
    if missing:
        notes.append(f"the CUR has no ECR line for {len(missing)} day(s): {days_text(missing)}")
    last_week = days_present[-WEEK:]
    billed: dict[tuple, float] = defaultdict(float)
    storage: dict[tuple, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    unmatched: dict[str, float] = defaultdict(float)
    for line in lines:
        key = repository_key(line.resource_id, line.account_id, line.region)
        if key not in by_key:
            unmatched[line.resource_id or "(no resource ID)"] += line.usd
            continue
        billed[key] += line.usd
        if line.storage:
            storage[key][line.day] += line.usd
    rows = []
    for key in {*billed, *by_key}:
        estimated = by_key[key]
        series = storage.get(key, {})
        rows.append(RepositoryBill(
            key[2], key[0], key[1], estimated.arn, billed.get(key, 0.0),
            sum(series.get(d, 0.0) for d in last_week) / len(last_week),
            daily_estimate(estimated.monthly_cost_usd, days_present[-1])))
    rows.sort(key=lambda r: (-r.billed_usd, r.repository, r.region, r.account_id))
    return CurBilling(source, currency, start, end, rows, sum(unmatched.values()),
                      sorted(unmatched.items(), key=lambda item: -item[1]), notes)


def cur_service_bill(lines: Iterable[CurLine], repositories: Sequence[EstimatedRepository]) -> ServiceBill:
    """The CUR summed over the service (the report's figures with ECR_COST_BILLING=cur), with each matched
    repository's storage per day (the adoptions' before and after)."""
    lines = list(lines)
    arns = {(r.account_id, r.region, r.repository): r.arn for r in repositories}
    currency, _ = choose_currency(Counter(line.currency for line in lines))
    per_repo: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for line in lines:
        key = repository_key(line.resource_id, line.account_id, line.region)
        arn = arns.get(key) if key is not None else None
        if arn is not None and line.storage and line.currency == currency:
            per_repo[arn][line.day] += line.usd
    cost = [CostLine(line.day, STORAGE_SUFFIX if line.storage else "other", line.usd, line.currency)
            for line in lines]
    return service_bill(cost, "cur", per_repo)
