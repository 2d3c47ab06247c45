"""The weekly report rendered: the channel's Block Kit message, terminal text and JSON."""
from __future__ import annotations

from collections.abc import Sequence

from ..core.billing import BillingSummary
from ..core.report import WeeklyReport
from . import blocks
from .text import account_json, account_lines, account_name, gib, iso, text_table, usd


def _change(amount: float | None) -> str:
    if amount is None:
        return "new"
    return f"{'+' if amount >= 0 else '-'}{usd(abs(amount))}"


def _names(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(blocks.escape(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def report_message(report: WeeklyReport) -> dict:
    """The channel message: within Slack's limits for any estate, with a plain-text fallback."""
    s = report.summary
    change = "" if report.change_usd is None else f" ({_change(report.change_usd)} vs last week)"
    top_lines = [f"{line.rank}. *{blocks.escape(line.label)}* {gib(line.row.stored_bytes)} GB · "
                 f"*{usd(line.row.monthly_cost_usd)}/mo* ({_change(line.change_usd)}) · policy: "
                 f"{blocks.escape(line.policy)} · {blocks.owners_text(line.row.owners)}" for line in report.top]
    body = [
        blocks.header(f"ECR cost report: week of {report.period_start:%d %b %Y}"),
        blocks.section(f"*{usd(s.monthly_cost_usd)}/month*{change} for {s.repository_count} repositories, "
                       f"{gib(s.stored_bytes)} GB stored"),
        *blocks.sections(["*Top 10 by cost*", *top_lines] if top_lines else ["No repositories."]),
        blocks.section(f"*Median* {usd(s.median_monthly_cost_usd)}/month; {len(s.above_median)} repositories "
                       f"above it"),
        *([blocks.section("*Top accounts* " + " · ".join(
            f"{blocks.escape(account_name(a))} *{usd(a.monthly_cost_usd)}/mo* ({a.repository_count} repositories)"
            for a in s.accounts[:5]) + (f" · {len(s.accounts)} accounts in all" if len(s.accounts) > 5 else ""))]
          if len(s.accounts) > 1 else []),
        blocks.section(f"*Without a lifecycle policy* {report.without_policy_count} repositories; the base policy "
                       f"would save *{usd(report.base_policy_savings_usd)}/month* across them"),
        blocks.section(f"*Unused* ({len(report.unused)}): {_names(report.unused, 30)}" if report.unused
                       else "*Unused* none"),
    ]
    if report.exempt:
        lines = [f"• {blocks.escape(e.label)} *{usd(e.row.monthly_cost_usd)}/mo*: {blocks.escape(e.exemption.text)}"
                 + (f", by {blocks.mention(e.exemption.by)}" if e.exemption.by else "") for e in report.exempt[:15]]
        if len(report.exempt) > 15:
            lines.append(f"… and {len(report.exempt) - 15} more")
        body += blocks.sections([f"*Exempt* ({len(report.exempt)}, {usd(exempt_total(report))}/month)", *lines])
    if report.unowned:
        lines = [f"{blocks.escape(label)} {usd(row.monthly_cost_usd)}" for label, row in report.unowned[:15]]
        more = f" and {len(report.unowned) - 15} more" if len(report.unowned) > 15 else ""
        body.append(blocks.section(f"*Without an owner* ({len(report.unowned)}, "
                                   f"{usd(sum(r.monthly_cost_usd for _, r in report.unowned))}/month): "
                                   f"{', '.join(lines)}{more}. Owners: press *I own this* in `/ecr-cost NAME`."))
    if report.growth:
        body.append(blocks.section(growth_line(report, blocks.escape)))
    if report.swept:
        body.append(blocks.section(blocks.clip(swept_line(report, blocks.escape), blocks.MAX_SECTION)))
    if report.realised:
        lines = [f"• {blocks.escape(r.label)}: {usd(r.cost_at_adoption_usd)} → {usd(r.cost_now_usd)} "
                 f"(*{usd(r.saved_usd)}/mo*), adopted by {blocks.mention(r.adopted_by)}" for r in report.realised[:20]]
        if len(report.realised) > 20:
            lines.append(f"… and {len(report.realised) - 20} more")
        body.append(blocks.section(f"*Saved by policies adopted through the bot* "
                                   f"{usd(report.realised_total_usd)}/month\n" + "\n".join(lines)))
    if report.billing is not None:
        body.append(blocks.section(blocks.clip("\n".join(billing_lines(report.billing, blocks.escape, bold="*")),
                                               blocks.MAX_SECTION)))
    if report.partial:
        body.append(blocks.section(":warning: *Partial result*: " + "; ".join(
            blocks.escape(e) for e in report.errors[:10]) + (" …" if len(report.errors) > 10 else "")))
    body.append(blocks.context(f"generated {blocks.date_text(report.generated_at)} · `/ecr-cost NAME` for a "
                               f"repository's detail and actions"))
    return {"text": report_text_fallback(report), "blocks": body[:blocks.MAX_BLOCKS]}


def exempt_total(report: WeeklyReport) -> float:
    return sum(e.row.monthly_cost_usd for e in report.exempt)


def report_text_fallback(report: WeeklyReport) -> str:
    s = report.summary
    change = "" if report.change_usd is None else f" ({_change(report.change_usd)} vs last week)"
    top = ", ".join(f"{line.label} {usd(line.row.monthly_cost_usd)}" for line in report.top[:3])
    partial = " PARTIAL: some accounts or regions could not be read." if report.partial else ""
    return blocks.clip(f"ECR cost report, week of {report.period_start:%d %b %Y}: {usd(s.monthly_cost_usd)}/month"
                       f"{change}, {s.repository_count} repositories. Costliest: {top}. "
                       f"{report.without_policy_count} without a lifecycle policy could save "
                       f"{usd(report.base_policy_savings_usd)}/month.{partial}", blocks.MAX_SECTION)


def report_text(report: WeeklyReport) -> str:
    """A terminal rendering of the same report."""
    s = report.summary
    change = "" if report.change_usd is None else f" ({_change(report.change_usd)} vs last week)"
    rows = [[str(line.rank), line.label, gib(line.row.stored_bytes), usd(line.row.monthly_cost_usd),
             _change(line.change_usd), line.policy, " ".join(line.row.owners) or "-"] for line in report.top]
    lines = [f"ECR cost report: week of {report.period_start:%d %b %Y} (generated {iso(report.generated_at)})",
             f"{usd(s.monthly_cost_usd)}/month{change} for {s.repository_count} repositories, "
             f"{gib(s.stored_bytes)} GB stored", "",
             *text_table(["#", "repository", "GB", "USD/month", "change", "policy", "owners"], rows,
                         right={0, 2, 3, 4}), "",
             f"median {usd(s.median_monthly_cost_usd)}/month; {len(s.above_median)} repositories above it",
             *account_lines(s.accounts),
             f"without a lifecycle policy: {report.without_policy_count}; the base policy would save "
             f"{usd(report.base_policy_savings_usd)}/month across them",
             f"unused ({len(report.unused)}): {', '.join(report.unused[:30]) or 'none'}"
             + (f" and {len(report.unused) - 30} more" if len(report.unused) > 30 else "")]
    if report.exempt:
        lines.append(f"exempt ({len(report.exempt)}, {usd(exempt_total(report))}/month):")
        lines += [f"  {e.label} {usd(e.row.monthly_cost_usd)}/month: {e.exemption.text}"
                  + (f" (by {e.exemption.by})" if e.exemption.by else "") for e in report.exempt]
    if report.unowned:
        lines.append(f"without an owner ({len(report.unowned)}): "
                     + ", ".join(f"{label} {usd(row.monthly_cost_usd)}" for label, row in report.unowned[:30])
                     + (f" and {len(report.unowned) - 30} more" if len(report.unowned) > 30 else ""))
    if report.growth:
        lines.append(growth_line(report, str).replace("*", ""))
    if report.swept:
        lines.append(swept_line(report, str))
    if report.realised:
        lines.append(f"saved by policies adopted through the bot: {usd(report.realised_total_usd)}/month")
        lines += [f"  {r.label}: {usd(r.cost_at_adoption_usd)} -> {usd(r.cost_now_usd)} "
                  f"({usd(r.saved_usd)}/month), adopted by {r.adopted_by} {iso(r.adopted_at)}" for r in report.realised]
    if report.billing is not None:
        lines += billing_lines(report.billing, str)
    if report.partial:
        lines.append("PARTIAL RESULT: " + "; ".join(report.errors))
    return "\n".join(lines)


def report_json(report: WeeklyReport) -> dict:
    s = report.summary
    return {
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
        "base_policy_savings_usd": round(report.base_policy_savings_usd, 4),
        "exempt": [{"repository": e.label, "monthly_cost_usd": round(e.row.monthly_cost_usd, 4),
                    "reason": e.exemption.reason, "note": e.exemption.note, "source": e.exemption.source,
                    "by": e.exemption.by} for e in report.exempt],
        "unowned": [{"repository": label, "monthly_cost_usd": round(row.monthly_cost_usd, 4)}
                    for label, row in report.unowned],
        "realised_savings": [{"repository": r.label, "adopted_by": r.adopted_by, "adopted_at": iso(r.adopted_at),
                              "cost_at_adoption_usd": round(r.cost_at_adoption_usd, 4),
                              "cost_now_usd": round(r.cost_now_usd, 4), "saved_usd": round(r.saved_usd, 4),
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
    each = "; ".join(f"{escape(w.label)} {w.images} image{'s' if w.images != 1 else ''}, {gib(w.freed_bytes)} GB, "
                     f"{usd(w.monthly_usd)}/month" for w in report.swept[:15])
    more = f"; and {len(report.swept) - 15} more" if len(report.swept) > 15 else ""
    return (f"swept this week: {total[0]} image{'s' if total[0] != 1 else ''}, {gib(total[1])} GB, "
            f"{usd(total[2])}/month ({each}{more})")


def growth_line(report: WeeklyReport, escape) -> str:
    """The repositories whose new layers cost the most per week (`ecr-cost-bot size NAME` says why)."""
    shown = ", ".join(f"{escape(g.label)} +{gib(g.new_bytes_per_week)} GB/week (+{usd(g.monthly_usd_added_per_week)}"
                      f"/month each week)" for g in report.growth)
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
            "storage_daily": [{"date": day.isoformat(), "usd": round(amount, 4)} for day, amount in billing.storage_daily],
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
                + (f"; estimate {usd(billing.estimate_daily_usd)}/day" if billing.estimate_daily_usd is not None
                   else "")]
    currency = "" if billing.currency in (None, "USD") else f" ({billing.currency})"
    change = billing.change_usd or 0.0
    lines = [f"{b}Billed ECR storage{b} ({SOURCES.get(billing.source, billing.source)}{currency}): "
             f"{usd(billing.storage_last_7_days_usd)} in the last 7 days, {usd(billing.storage_previous_7_days_usd or 0)}"
             f" the 7 before ({'+' if change >= 0 else '-'}{usd(abs(change))}); other ECR "
             f"{usd(billing.other_last_7_days_usd or 0)}"]
    if billing.estimate_daily_usd is not None:
        days = [amount for _, amount in billing.storage_daily[-7:]]
        billed = f"{usd(sum(days) / len(days))}/day billed" if days else "nothing billed"
        difference = "" if billing.difference_pct is None else f" ({billing.difference_pct:+.0f}%)"
        lines.append(f"{b}Estimate{b} {usd(billing.estimate_daily_usd)}/day, {billed}{difference}")
    lines.append("per day: " + ", ".join(f"{day:%d %b} {usd(amount)}" for day, amount in billing.storage_daily))
    if billing.reasons:
        lines.append("likely reasons: " + "; ".join(escape(r) for r in billing.reasons))
    lines += [escape(note) for note in billing.notes]
    for effect in billing.adoptions:
        lines.append(f"{escape(effect.label)} (adopted {effect.adopted_at:%d %b}): billed storage "
                     f"{usd(effect.before_daily_usd)}/day before, {usd(effect.after_daily_usd)}/day after "
                     f"({'the whole service' if effect.scope == 'service' else 'the repository'})")
    return lines
