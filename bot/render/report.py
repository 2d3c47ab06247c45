"""The weekly report rendered: the channel's Block Kit message, terminal text and JSON."""
from __future__ import annotations

from collections.abc import Sequence

from ..core.billing import BillingSummary
from ..core.report import RealisedSaving, WeeklyReport
from ..format import day as calendar_day
from ..format import iso, json_usd, local_time, per_day, per_month, plural, signed, size, status, usd
from . import blocks
from .text import account_json, account_lines, account_name, adopting_sentence, limit_text, savings_json, text_table

SAVINGS_LISTED = 5  # the repositories without a policy named with what adopting frees there


def _change(amount: float | None) -> str:
    if amount is None:
        return "new"
    return signed(amount)


def period_text(report: WeeklyReport) -> str:
    """The week the report covers, in ECR_COST_TIMEZONE (the zone the period was computed in)."""
    return f"week of {calendar_day(report.period_start)}"


def generated_text(report: WeeklyReport) -> str:
    """When the report was made, in ECR_COST_TIMEZONE (terminal text; Slack shows a date token instead)."""
    zone = str(report.period_start.tzinfo or "UTC")
    return local_time(report.generated_at, zone)


def base_policy_line(report: WeeklyReport, bold: str = "") -> str:
    """The total across the repositories without a policy: what adopting the base policy frees (in-use images kept),
    the sum of the figures each repository's detail states."""
    b = bold
    return (f"{b}Without a lifecycle policy{b} {plural(report.without_policy_count, 'repository')}; adopting the base "
            f"policy on them would free {b}{per_month(report.base_policy_savings_usd)}{b} (in-use images kept)")


def base_policy_detail(report: WeeklyReport, escape) -> list[str]:
    return [f"  {escape(label)}: {adopting_sentence(savings)}" for label, savings
            in report.base_policy_savings[:SAVINGS_LISTED] if savings.expiring_count]


def realised_text(r: RealisedSaving, escape, bold: str = "") -> str:
    """An adoption's saving on the projection's basis (stored cost before and after), with the bill when it has one:
    "estimated $X/month, billed $Y/month"."""
    billed = "" if r.billed_usd is None else f", billed {per_month(r.billed_usd)}"
    projected = "" if r.projected_usd is None else f"; projected {per_month(r.projected_usd)} at adoption"
    return (f"{escape(r.label)}: {per_month(r.cost_at_adoption_usd)} → {per_month(r.cost_now_usd)}, saved: "
            f"{bold}estimated {per_month(r.saved_usd)}{bold}{billed}{projected}")


def _names(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(blocks.escape(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def report_message(report: WeeklyReport) -> dict:
    """The channel message: within Slack's limits for any estate, with a plain-text fallback."""
    s = report.summary
    change = "" if report.change_usd is None else f" ({_change(report.change_usd)} vs last week)"
    top_lines = [f"{line.rank}. *{blocks.escape(line.label)}* {size(line.row.stored_bytes)} · "
                 f"*{per_month(line.row.monthly_cost_usd)}* ({_change(line.change_usd)}) · policy: "
                 f"{blocks.escape(status(line.policy))} · {blocks.owners_text(line.row.owners)}"
                 + (f" · limit {blocks.escape(limit)}" if (limit := limit_text(line.row)) else "")
                 for line in report.top]
    body = [
        blocks.header(f"ECR cost report: {period_text(report)}"),
        blocks.section(f"*{per_month(s.monthly_cost_usd)}*{change} for {plural(s.repository_count, 'repository')}, "
                       f"{size(s.stored_bytes)} stored"),
        *blocks.sections(over_limit_lines(report, blocks.escape, "*")),
        *blocks.sections(["*Top 10 by cost*", *top_lines] if top_lines else ["No repositories."]),
        blocks.section(f"*Median* {per_month(s.median_monthly_cost_usd)}; "
                       f"{plural(len(s.above_median), 'repository')} above it"),
        *([blocks.section("*Top accounts* " + " · ".join(
            f"{blocks.escape(account_name(a))} *{per_month(a.monthly_cost_usd)}* "
            f"({plural(a.repository_count, 'repository')})"
            for a in s.accounts[:5]) + (f" · {len(s.accounts)} accounts in all" if len(s.accounts) > 5 else ""))]
          if len(s.accounts) > 1 else []),
        *blocks.sections([base_policy_line(report, bold="*"), *base_policy_detail(report, blocks.escape)]),
        blocks.section(f"*Unused* ({len(report.unused)}): {_names(report.unused, 30)}" if report.unused
                       else "*Unused* none"),
    ]
    if report.exempt:
        lines = [f"• {blocks.escape(e.label)} *{per_month(e.row.monthly_cost_usd)}*: {blocks.escape(e.exemption.text)}"
                 + (f", by {blocks.mention(e.exemption.by)}" if e.exemption.by else "") for e in report.exempt[:15]]
        if len(report.exempt) > 15:
            lines.append(f"… and {len(report.exempt) - 15} more")
        body += blocks.sections([f"*Exempt* ({len(report.exempt)}, {per_month(exempt_total(report))})", *lines])
    if report.unowned:
        lines = [f"{blocks.escape(label)} {per_month(row.monthly_cost_usd)}" for label, row in report.unowned[:15]]
        more = f" and {len(report.unowned) - 15} more" if len(report.unowned) > 15 else ""
        body.append(blocks.section(f"*Without an owner* ({len(report.unowned)}, "
                                   f"{per_month(sum(r.monthly_cost_usd for _, r in report.unowned))}): "
                                   f"{', '.join(lines)}{more}. Owners: press *I own this* in `/ecr-cost NAME`."))
    if report.growth:
        body.append(blocks.section(growth_line(report, blocks.escape)))
    if report.swept:
        body.append(blocks.section(blocks.clip(swept_line(report, blocks.escape), blocks.MAX_SECTION)))
    if report.realised:
        lines = [f"• {realised_text(r, blocks.escape, bold='*')}, adopted by {blocks.mention(r.adopted_by)}"
                 for r in report.realised[:20]]
        if len(report.realised) > 20:
            lines.append(f"… and {len(report.realised) - 20} more")
        body.append(blocks.section(f"*Saved by policies adopted through the bot* estimated "
                                   f"{per_month(report.realised_total_usd)}{billed_total(report)}\n"
                                   + "\n".join(lines)))
    if report.billing is not None:
        body.append(blocks.section(blocks.clip("\n".join(billing_lines(report.billing, blocks.escape, bold="*")),
                                               blocks.MAX_SECTION)))
    if report.partial:
        body.append(blocks.section(":warning: *Partial result*: " + "; ".join(
            blocks.escape(e) for e in report.errors[:10]) + (" …" if len(report.errors) > 10 else "")))
    body.append(blocks.context(f"generated {blocks.date_text(report.generated_at)} · `/ecr-cost NAME` for a "
                               f"repository's detail and actions"))
    return {"text": report_text_fallback(report), "blocks": body[:blocks.MAX_BLOCKS]}


def billed_total(report: WeeklyReport) -> str:
    """", billed $Y/month" when the CUR has the repositories' storage before and after their adoptions."""
    billed = [r.billed_usd for r in report.realised if r.billed_usd is not None]
    if not billed:
        return ""
    some = "" if len(billed) == len(report.realised) else f" ({len(billed)} of {len(report.realised)} in the bill)"
    return f", billed {per_month(sum(billed))}{some}"


def exempt_total(report: WeeklyReport) -> float:
    return sum(e.row.monthly_cost_usd for e in report.exempt)


def report_text_fallback(report: WeeklyReport) -> str:
    s = report.summary
    change = "" if report.change_usd is None else f" ({_change(report.change_usd)} vs last week)"
    top = ", ".join(f"{line.label} {per_month(line.row.monthly_cost_usd)}" for line in report.top[:3])
    partial = " PARTIAL: some accounts or regions could not be read." if report.partial else ""
    return blocks.clip(f"ECR cost report, {period_text(report)}: {per_month(s.monthly_cost_usd)}"
                       f"{change}, {plural(s.repository_count, 'repository')}. Costliest: {top}. "
                       f"Adopting the base policy on the {report.without_policy_count} without a lifecycle policy "
                       f"would free {per_month(report.base_policy_savings_usd)}.{partial}", blocks.MAX_SECTION)


def report_text(report: WeeklyReport) -> str:
    """A terminal rendering of the same report."""
    s = report.summary
    change = "" if report.change_usd is None else f" ({_change(report.change_usd)} vs last week)"
    rows = [[str(line.rank), line.label, size(line.row.stored_bytes), usd(line.row.monthly_cost_usd),
             _change(line.change_usd), status(line.policy), " ".join(line.row.owners) or "-"] for line in report.top]
    lines = [f"ECR cost report: {period_text(report)} (generated {generated_text(report)})",
             f"{per_month(s.monthly_cost_usd)}{change} for {plural(s.repository_count, 'repository')}, "
             f"{size(s.stored_bytes)} stored", "", *over_limit_lines(report, str, ""),
             *text_table(["#", "repository", "stored", "USD/month", "change", "policy", "owners"], rows,
                         right={0, 2, 3, 4}), "",
             f"median {per_month(s.median_monthly_cost_usd)}; {plural(len(s.above_median), 'repository')} above it",
             *account_lines(s.accounts),
             base_policy_line(report).replace("Without a lifecycle policy", "without a lifecycle policy:", 1),
             *base_policy_detail(report, str),
             f"unused ({len(report.unused)}): {', '.join(report.unused[:30]) or 'none'}"
             + (f" and {len(report.unused) - 30} more" if len(report.unused) > 30 else "")]
    if report.exempt:
        lines.append(f"exempt ({len(report.exempt)}, {per_month(exempt_total(report))}):")
        lines += [f"  {e.label} {per_month(e.row.monthly_cost_usd)}: {e.exemption.text}"
                  + (f" (by {e.exemption.by})" if e.exemption.by else "") for e in report.exempt]
    if report.unowned:
        lines.append(f"without an owner ({len(report.unowned)}): "
                     + ", ".join(f"{label} {per_month(row.monthly_cost_usd)}" for label, row in report.unowned[:30])
                     + (f" and {len(report.unowned) - 30} more" if len(report.unowned) > 30 else ""))
    if report.growth:
        lines.append(growth_line(report, str).replace("*", ""))
    if report.swept:
        lines.append(swept_line(report, str))
    if report.realised:
        lines.append(f"saved by policies adopted through the bot: estimated {per_month(report.realised_total_usd)}"
                     f"{billed_total(report)}")
        lines += [f"  {realised_text(r, str)}, adopted by {r.adopted_by} {iso(r.adopted_at)}" for r in report.realised]
    if report.billing is not None:
        lines += billing_lines(report.billing, str)
    if report.partial:
        lines.append("PARTIAL RESULT: " + "; ".join(report.errors))
    return "\n".join(lines)


def over_limit_lines(report: WeeklyReport, escape, bold: str, limit: int = 10) -> list[str]:
    """The repositories over their monthly limit, first in the report (none: no lines)."""
    if not report.over_limit:
        return []
    lines = [f"{bold}Over their limit{bold} ({len(report.over_limit)})"]
    lines += [f"• {escape(label)} {usd(row.monthly_cost_usd)} of {per_month(cap)}" for label, row, cap
              in report.over_limit[:limit]]
    return lines + ([f"… and {len(report.over_limit) - limit} more (`ecr-cost-bot watch`)"]
                    if len(report.over_limit) > limit else [])


def report_json(report: WeeklyReport) -> dict:
    s = report.summary
    return {
        "over_limit": [{"repository": row.repository, "account_id": row.account_id, "region": row.region,
                        "monthly_cost_usd": round(row.monthly_cost_usd, 4), "limit_usd": round(cap, 4)}
                       for _, row, cap in report.over_limit],
        "period_start": iso(report.period_start), "generated_at": iso(report.generated_at),
        "partial": report.partial, "errors": report.errors,
        "summary": {"repository_count": s.repository_count, "stored_bytes": s.stored_bytes,
                    "monthly_cost_usd": round(s.monthly_cost_usd, 4),
                    "change_usd": None if report.change_usd is None else round(report.change_usd, 4),
                    "median_monthly_cost_usd": round(s.median_monthly_cost_usd, 4),
                    "above_median_count": len(s.above_median)},
        "top": [{"rank": line.rank, "repository": line.row.repository, "region": line.row.region,
                 "account_id": line.row.account_id, "stored_bytes": line.row.stored_bytes,
                 "monthly_cost_usd": round(line.row.monthly_cost_usd, 4),
                 "change_usd": None if line.change_usd is None else round(line.change_usd, 4),
                 "policy": line.policy, "owners": list(line.row.owners)} for line in report.top],
        "accounts": [account_json(a) for a in s.accounts],
        "unused": report.unused,
        "without_policy_count": report.without_policy_count,
        "base_policy_savings_usd": json_usd(report.base_policy_savings_usd),  # the sum of what adopting frees
        "base_policy_savings": [{"repository": label, **savings_json(savings)}
                                for label, savings in report.base_policy_savings],
        "exempt": [{"repository": e.label, "monthly_cost_usd": round(e.row.monthly_cost_usd, 4),
                    "reason": e.exemption.reason, "note": e.exemption.note, "source": e.exemption.source,
                    "by": e.exemption.by} for e in report.exempt],
        "unowned": [{"repository": label, "monthly_cost_usd": round(row.monthly_cost_usd, 4)}
                    for label, row in report.unowned],
        "realised_savings": [{"repository": r.label, "adopted_by": r.adopted_by, "adopted_at": iso(r.adopted_at),
                              "cost_at_adoption_usd": round(r.cost_at_adoption_usd, 4),
                              "cost_now_usd": round(r.cost_now_usd, 4), "saved_usd": round(r.saved_usd, 4),
                              "projected_monthly_savings_usd": json_usd(r.projected_usd),
                              "billed_saved_usd": json_usd(r.billed_usd),
                              **billed_effect_json(report.billing, r.label, r.adopted_at)}
                             for r in report.realised],
        "realised_savings_usd": round(report.realised_total_usd, 4),
        "trend": [{"at": iso(t), "monthly_cost_usd": round(c, 4)} for t, c in report.trend],
        "growth": [{"repository": g.label, "new_bytes_per_week": g.new_bytes_per_week,
                    "monthly_usd_added_per_week": round(g.monthly_usd_added_per_week, 4)} for g in report.growth],
        "billing": billing_json(report.billing),
        "swept": [{"repository": w.label, "images": w.images, "bytes": w.freed_bytes,
                   "monthly_usd": round(w.monthly_usd, 4)} for w in report.swept],
    }


def swept_line(report: WeeklyReport, escape) -> str:
    """Swept this week (images nobody pulled for N days, deleted by the bot's sweep), per repository and in total."""
    total = (sum(w.images for w in report.swept), sum(w.freed_bytes for w in report.swept),
             sum(w.monthly_usd for w in report.swept))
    each = "; ".join(f"{escape(w.label)} {plural(w.images, 'image')}, {size(w.freed_bytes)}, "
                     f"{per_month(w.monthly_usd)}" for w in report.swept[:15])
    more = f"; and {len(report.swept) - 15} more" if len(report.swept) > 15 else ""
    return (f"swept this week: {plural(total[0], 'image')}, {size(total[1])}, "
            f"{per_month(total[2])} ({each}{more})")


def growth_line(report: WeeklyReport, escape) -> str:
    """The repositories whose new layers cost the most per week (`ecr-cost-bot size NAME` says why)."""
    shown = ", ".join(f"{escape(g.label)} +{size(g.new_bytes_per_week)}/week "
                      f"(+{per_month(g.monthly_usd_added_per_week)} each week)" for g in report.growth)
    return f"*Growing fastest* (new layers per week): {shown}; `ecr-cost-bot size NAME` shows why"


def _round(amount: float | None) -> float | None:
    return None if amount is None else round(amount, 4)


def billing_json(billing: BillingSummary | None) -> dict:
    """The report's `billing` object: the bill beside the estimate."""
    if billing is None:
        return {"source": None, "currency": None, "storage_daily": [], "storage_last_7_days_usd": None,
                "storage_previous_7_days_usd": None, "other_last_7_days_usd": None, "estimate_daily_usd": None,
                "note": None}
    return {"source": billing.source, "currency": billing.currency,
            "storage_daily": [{"date": day.isoformat(), "usd": round(amount, 4)}
                              for day, amount in billing.storage_daily],
            "storage_last_7_days_usd": _round(billing.storage_last_7_days_usd),
            "storage_previous_7_days_usd": _round(billing.storage_previous_7_days_usd),
            "other_last_7_days_usd": _round(billing.other_last_7_days_usd),
            "estimate_daily_usd": _round(billing.estimate_daily_usd), "note": billing.note}


def billed_effect_json(billing: BillingSummary | None, label: str, adopted_at) -> dict:
    """An adoption's billed storage per day before and after it (null when too recent or without a bill)."""
    effect = next((e for e in (billing.adoptions if billing else []) if e.label == label
                   and e.adopted_at == adopted_at), None)
    return {"billed_daily_before_usd": _round(effect.before_daily_usd) if effect else None,
            "billed_daily_after_usd": _round(effect.after_daily_usd) if effect else None,
            "billed_scope": effect.scope if effect else None}


SOURCES = {"cost-explorer": "Cost Explorer", "cur": "the CUR"}


def billing_lines(billing: BillingSummary, escape, bold: str = "") -> list[str]:
    """The bill beside the estimate, as lines (Block Kit with ``bold="*"``, plain text without)."""
    b = bold
    if billing.source is None or billing.storage_last_7_days_usd is None:
        return [f"{b}The bill{b}: {escape(billing.note or 'no billing data')}"
                + (f"; estimate {per_day(billing.estimate_daily_usd)}" if billing.estimate_daily_usd is not None
                   else "")]
    currency = "" if billing.currency in (None, "USD") else f" ({billing.currency})"
    change = billing.change_usd or 0.0
    lines = [f"{b}Billed ECR storage{b} ({SOURCES.get(billing.source, billing.source)}{currency}): "
             f"{usd(billing.storage_last_7_days_usd)} in the last 7 days, "
             f"{usd(billing.storage_previous_7_days_usd or 0)} the 7 before ({signed(change)}); other ECR "
             f"{usd(billing.other_last_7_days_usd or 0)}"]
    if billing.estimate_daily_usd is not None:
        days = [amount for _, amount in billing.storage_daily[-7:]]
        billed = f"{per_day(sum(days) / len(days))} billed" if days else "nothing billed"
        difference = "" if billing.difference_pct is None else f" ({billing.difference_pct:+.0f}%)"
        lines.append(f"{b}Estimate{b} {per_day(billing.estimate_daily_usd)}, {billed}{difference}")
    lines.append("per day: " + ", ".join(f"{day:%d %b} {usd(amount)}" for day, amount in billing.storage_daily))
    if billing.reasons:
        lines.append("likely reasons: " + "; ".join(escape(r) for r in billing.reasons))
    lines += [escape(note) for note in billing.notes]
    for effect in billing.adoptions:
        lines.append(f"{escape(effect.label)} (adopted {effect.adopted_at:%d %b}): billed storage "
                     f"{per_day(effect.before_daily_usd)} before, {per_day(effect.after_daily_usd)} after "
                     f"({'the whole service' if effect.scope == 'service' else 'the repository'})")
    return lines
