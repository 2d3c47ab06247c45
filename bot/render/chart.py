"""The report's chart: the top repositories as bars, total monthly cost over the stored periods as a line."""
from __future__ import annotations

import io

from ..core.report import WeeklyReport
from ..format import per_month, plural, usd


def chart_png(report: WeeklyReport) -> bytes:
    out = io.BytesIO()
    chart_figure(report).savefig(out, format="png")
    return out.getvalue()


def chart_figure(report: WeeklyReport):
    # Figure with the Agg canvas directly: no pyplot global state, safe in the scheduler's thread
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    billed = report.billing is not None and bool(report.billing.storage_daily)
    figure = Figure(figsize=(15 if billed else 11, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    if billed:
        bars, trend, bill = figure.subplots(1, 3, width_ratios=[3, 2, 2])
        billed_series(bill, report)
    else:
        bars, trend = figure.subplots(1, 2, width_ratios=[3, 2])
    labels = [line.label if len(line.label) <= 32 else line.label[:31] + "…" for line in report.top]
    costs = [line.row.monthly_cost_usd for line in report.top]
    bars.barh(range(len(costs)), costs, color="#ff9900")
    bars.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel("USD / month")
    bars.margins(x=0.12)  # room for the value labels
    bars.set_title(f"Top {plural(len(costs), 'repository')} by stored cost")
    for y, cost in enumerate(costs):
        bars.annotate(usd(cost), (cost, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    if report.without_policy_count:  # the same figure as the report's text: what adopting the base policy frees
        figure.suptitle(f"Adopting the base policy on the {plural(report.without_policy_count, 'repository')} "
                        f"without a lifecycle policy would free {per_month(report.base_policy_savings_usd)} "
                        f"(in-use images kept)", fontsize=9)
    when = [moment for moment, _ in report.trend]
    totals = [total for _, total in report.trend]
    trend.plot(when, totals, marker="o", color="#232f3e")
    trend.set_title("Total monthly cost per scan")
    trend.set_ylabel("USD / month")
    trend.set_ylim(bottom=0)
    trend.tick_params(axis="x", labelrotation=30, labelsize=8)
    return figure


def billed_series(axes, report: WeeklyReport) -> None:
    """Billed ECR storage per day (the last 14 complete days in the bill) beside the estimate per day."""
    billing = report.billing
    assert billing is not None  # drawn only with a bill
    days = [day for day, _ in billing.storage_daily]
    axes.bar(days, [amount for _, amount in billing.storage_daily], color="#ff9900", label="billed storage")
    if billing.estimate_daily_usd is not None:
        axes.axhline(billing.estimate_daily_usd, color="#232f3e", linestyle="--", label="estimate")
    axes.set_title("Billed ECR storage per day")
    axes.set_ylabel(f"{billing.currency or 'USD'} / day")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=7)
    axes.tick_params(axis="x", labelrotation=30, labelsize=7)
