"""Scan results as the contract's JSON, the playbook's CSV, and terminal text."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO, overload

from ..core.analysis import AccountTotal, Summary, display_names, summarize
from ..core.lifecycle import Preview
from ..core.models import (
    Image,
    PolicyDecision,
    PolicySavings,
    RepositoryCost,
    RepositoryRef,
    RepositoryView,
    ScanProblem,
    ScanResult,
)
from ..core.tuning import lifecycle_status
from ..format import MIB, iso, json_usd, per_month, plural, signed, signed_size, size, status, usd

if TYPE_CHECKING:  # the in-use, size and watch cores are imported by the renderers that use them, not by `scan`'s
    from ..core.inuse import InUseSet, Usage
    from ..core.size import SizeReport

__all__ = ["iso", "usd"]  # re-exported: the renderers' one way to write times and money (bot/format.py)


def repository_json(row: RepositoryCost) -> dict:
    return {
        "repository": row.repository, "account_id": row.account_id, "region": row.region,
        "arn": row.arn, "image_count": row.image_count,
        "stored_bytes": row.stored_bytes, "listed_bytes": row.listed_bytes,
        "monthly_cost_usd": round(row.monthly_cost_usd, 4),
        "last_pushed_at": iso(row.last_pushed_at), "last_pulled_at": iso(row.last_pulled_at),
        "unused": row.unused, "has_lifecycle_policy": row.has_lifecycle_policy,
        "owners": list(row.owners), "tags": dict(row.tags), "account_name": row.account_name,
    }


def account_json(total: AccountTotal) -> dict:
    return {"account_id": total.account_id, "account_name": total.account_name,
            "repository_count": total.repository_count, "stored_bytes": total.stored_bytes,
            "monthly_cost_usd": round(total.monthly_cost_usd, 4)}


def problem_json(problem: ScanProblem) -> dict:
    out = {"account_id": problem.account_id, "region": problem.region, "message": problem.message}
    if problem.repository:
        out["repository"] = problem.repository
    return out


class WrittenAsEncoded(list):
    """A JSON array whose items are made one at a time while json.dump writes them: a scan's 9,000 repository
    documents held at once were a quarter of its memory's growth from 100 to 300 accounts. json.dump's encoder (the
    pure-Python one: the C encoder serves only json.dumps without indent) asks only whether the list is empty, then
    iterates it; tests/test_analysis.py checks the text is the same as for a plain list."""

    def __init__(self, items: Sequence[Any], make: Callable[[Any], Any]):
        super().__init__()
        self._items, self._make = items, make

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return map(self._make, self._items)


def scan_json(result: ScanResult, *, streamed: bool = False) -> dict:
    """The contract's scan document (``streamed``: its repositories made as json.dump writes them)."""
    summary = summarize(result.repositories)
    repositories = (WrittenAsEncoded(result.repositories, repository_json) if streamed
                    else [repository_json(r) for r in result.repositories])
    return {
        "generated_at": iso(result.generated_at),
        "price_per_gb_month": result.price_per_gb_month,
        "partial": result.partial,
        "errors": [problem_json(p) for p in result.errors],
        "warnings": [problem_json(p) for p in result.warnings],
        "summary": {
            "repository_count": summary.repository_count,
            "stored_bytes": summary.stored_bytes,
            "monthly_cost_usd": round(summary.monthly_cost_usd, 4),
            "median_monthly_cost_usd": round(summary.median_monthly_cost_usd, 4),
            "above_median": list(summary.above_median),
            "accounts": [account_json(a) for a in summary.accounts],
        },
        "repositories": repositories,
    }


def scan_csv(ranked: Sequence[RepositoryCost], out: TextIO | None = None) -> str:
    """The playbook's spreadsheet columns: name, size in whole MB (2^20 bytes), USD with 2 decimals. Written to
    ``out`` row by row when given (and "" returned), else returned."""
    text = io.StringIO()  # stays empty when written to ``out``
    writer = csv.writer(text if out is None else out, lineterminator="\n")
    writer.writerow(["Repositories", "Size", "Expected Cost"])
    labels = display_names(ranked)
    for row in ranked:
        writer.writerow([labels[row.arn], round(row.stored_bytes / MIB), f"{row.monthly_cost_usd:.2f}"])
    return text.getvalue()


# lists of a JSON document that say what went wrong: stderr's, not rows of the CSV
_NOT_ROWS = ("errors", "warnings", "notes", "problems", "in_use_problems")


def _inert(value):
    """A text cell a spreadsheet would run as a formula (=, +, -, @, a tab or a return first: a tag value, a
    decline note typed in Slack) gets a leading ' so it is shown as written (OWASP's advice); numbers stay."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def document_csv(doc: dict | list) -> tuple[str, list[str]]:
    """Any command's JSON document as one CSV table, and what it reports as errors or warnings (for stderr).

    Rows are the document's lists of objects (a list document is its own rows); with several lists, a first
    column ``section`` names each row's list. Nested objects become dotted columns, lists of scalars a
    space-separated cell, anything deeper its JSON. A document without a list is one row."""
    def cells(item: dict, prefix: str = "") -> dict:
        found: dict = {}
        for key, value in item.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                found.update(cells(value, f"{name}."))
            elif isinstance(value, list):
                scalar = all(not isinstance(v, (dict, list)) for v in value)
                found[name] = _inert(" ".join(str(v) for v in value) if scalar else json.dumps(value))
            else:
                found[name] = "" if value is None else _inert(value)
        return found

    notes: list[str] = []
    if isinstance(doc, list):
        sections = {"": doc}
    else:
        notes = ["the result is PARTIAL: see the errors"] if doc.get("partial") else []
        for key in _NOT_ROWS:
            notes.extend(v if isinstance(v, str) else json.dumps(v) for v in doc.get(key) or [])
        kept = {k: v for k, v in doc.items() if k not in _NOT_ROWS}
        sections = {k: v for k, v in kept.items() if isinstance(v, list) and v
                    and all(isinstance(i, dict) for i in v)} or {"": [kept]}
    named = len(sections) > 1
    rows = [({"section": key} if named else {}) | cells(item) for key, items in sections.items() for item in items]
    columns = list(dict.fromkeys(name for row in rows for name in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue(), notes


def limit_text(row: RepositoryCost) -> str | None:
    """A repository's limit and how close it is ("$4.10 of $5.00/month"), a malformed limit tag, or None."""
    from ..core.watch import limit_of

    limit, problem = limit_of(row)
    if problem is not None:
        return f"limit tag malformed: {problem}"
    if limit is None:
        return None
    return f"{usd(row.monthly_cost_usd)} of {per_month(limit)}" + (" (over)" if row.monthly_cost_usd > limit else "")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=False))).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def scan_table(result: ScanResult, base_policy: dict, limit: int | None = None) -> str:
    ranked = result.repositories
    labels = display_names(ranked)
    shown = ranked if limit is None else ranked[:limit]
    rows = [[str(i), labels[r.arn], r.region, str(r.image_count), size(r.stored_bytes), size(r.listed_bytes),
             usd(r.monthly_cost_usd), status(lifecycle_status(r.lifecycle_policy, base_policy)),
             "yes" if r.unused else "", " ".join(r.owners) or "-"]
            for i, r in enumerate(shown, 1)]
    lines = text_table(["#", "repository", "region", "images", "stored", "listed", "USD/month",
                    "policy", "unused", "owners"], rows, right={0, 3, 4, 5, 6})
    if limit is not None and len(ranked) > limit:
        lines.append(f"... and {len(ranked) - limit} more")
    lines.append("")
    lines.extend(summary_lines(summarize(ranked), result.price_per_gb_month))
    lines.extend(problem_lines(result))
    return "\n".join(lines)


def summary_lines(summary: Summary, price: float) -> list[str]:
    saved_by_dedup = summary.listed_bytes - summary.stored_bytes
    return [
        f"{plural(summary.repository_count, 'repository')}, {size(summary.stored_bytes)} stored, "
        f"{per_month(summary.monthly_cost_usd)} at {usd(price)}/GB-month (GB = 2^30 bytes)",
        f"median {per_month(summary.median_monthly_cost_usd)}; {plural(len(summary.above_median), 'repository')} "
        f"above it; {summary.without_policy} without a lifecycle policy; {summary.unused} unused",
        f"summing imageSizeInBytes (the playbook's script) would say {size(summary.listed_bytes)}: "
        f"{size(abs(saved_by_dedup))} {'over' if saved_by_dedup >= 0 else 'under'}stated by shared layers",
        *account_lines(summary.accounts),
    ]


def account_name(total: AccountTotal) -> str:
    return f"{total.account_name} ({total.account_id})" if total.account_name else total.account_id


def account_lines(accounts: Sequence[AccountTotal], limit: int = 10) -> list[str]:
    """The costliest accounts, when there is more than one."""
    if len(accounts) < 2:
        return []
    lines = [f"top accounts ({len(accounts)} in all):"]
    lines += [f"  {account_name(a)}: {per_month(a.monthly_cost_usd)}, {plural(a.repository_count, 'repository')}, "
              f"{size(a.stored_bytes)}" for a in accounts[:limit]]
    return lines


def problem_lines(result: ScanResult) -> list[str]:
    lines = []
    if result.partial:
        lines.append(f"PARTIAL RESULT: {plural(len(result.errors), 'part')} of the estate could not be read "
                     f"completely:")
        lines.extend(f"  - {_where(p)}: {p.message}" for p in result.errors)
    if result.warnings:
        lines.append(f"{plural(len(result.warnings), 'warning')}:")
        lines.extend(f"  - {_where(p)}: {p.message}" for p in result.warnings)
    return lines


def _where(problem: ScanProblem) -> str:
    where = f"account {problem.account_id} {problem.region}"
    return f"{where} {problem.repository}" if problem.repository else where


@overload
def savings_json(savings: PolicySavings) -> dict: ...
@overload
def savings_json(savings: None) -> None: ...
def savings_json(savings: PolicySavings | None) -> dict | None:
    """What adopting the base policy does (its protected form: in-use images kept), and the policy as written."""
    if savings is None:
        return None
    return {"expiring_image_count": savings.expiring_count, "image_count": savings.image_count,
            "bytes_freed": savings.bytes_freed, "monthly_savings_usd": json_usd(savings.monthly_usd),
            "in_use_checked": savings.in_use_checked,
            "as_written": {"expiring_image_count": savings.written_expiring_count,
                           "in_use_expiring_count": savings.written_in_use_expiring,
                           "bytes_freed": savings.written_bytes_freed,
                           "monthly_savings_usd": json_usd(savings.written_monthly_usd)}}


def adopting_sentence(savings: PolicySavings, bold: str = "") -> str:
    """What adopting does, the one way every surface says it: "expires 14 of 45 images, freeing 4.40 GB:
    $0.44/month"."""
    return (f"expires {savings.expiring_count} of {plural(savings.image_count, 'image')}, freeing "
            f"{size(savings.bytes_freed)}: {bold}{per_month(savings.monthly_usd)}{bold}")


def as_written_sentence(savings: PolicySavings) -> str | None:
    """The policy as written, on a line of its own that says so (None when it would do what adopting does)."""
    if not savings.differs:
        return None
    running = f" ({savings.written_in_use_expiring} of them running)" if savings.written_in_use_expiring else ""
    return (f"as written it would expire {savings.written_expiring_count}{running} and free "
            f"{per_month(savings.written_monthly_usd)}")


def repository_detail_json(row: RepositoryCost, position: int, total: int, previous: RepositoryCost | None,
                           savings: PolicySavings | None = None) -> dict:
    from ..core.watch import limit_of

    detail = repository_json(row)
    detail.update({
        "rank": position, "rank_of": total,
        "tagged_image_count": row.tagged_image_count,
        "untagged_image_count": row.untagged_image_count,
        "lifecycle_policy": row.lifecycle_policy,
        "limit_usd": limit_of(row)[0],
        "change_since_previous": None if previous is None else {
            "stored_bytes": row.stored_bytes - previous.stored_bytes,
            "monthly_cost_usd": json_usd(row.monthly_cost_usd - previous.monthly_cost_usd),
        },
        "base_policy": savings_json(savings),
    })
    return detail


def repository_detail_text(row: RepositoryCost, position: int, total: int, previous: RepositoryCost | None,
                           lifecycle_status: str, savings: PolicySavings | None = None) -> str:
    never = "never"
    lines = [
        f"{row.repository}  ({row.account_id} {row.region})",
        f"  rank            #{position} of {total}",
        f"  monthly cost    {per_month(row.monthly_cost_usd)}",
        f"  stored          {size(row.stored_bytes)} (unique layers)   listed {size(row.listed_bytes)} "
        f"(sum of imageSizeInBytes)",
        f"  images          {row.image_count} ({row.tagged_image_count} tagged, {row.untagged_image_count} untagged)",
        f"  last push       {iso(row.last_pushed_at) or never}",
        f"  last pull       {iso(row.last_pulled_at) or never}" + ("   UNUSED" if row.unused else ""),
        f"  owners          {' '.join(row.owners) or 'none (set the owner tag)'}",
        f"  lifecycle       {status(lifecycle_status)}",
    ]
    if savings is not None and lifecycle_status != "base":
        lines.append(f"  base policy     adopting it {adopting_sentence(savings)}"
                     + (" (in-use images kept)" if savings.in_use_checked else ""))
        if (written := as_written_sentence(savings)) is not None:
            lines.append(f"                  {written}")
    if (limit := limit_text(row)) is not None:
        lines.append(f"  limit           {limit}")
    if previous is not None:
        delta = row.monthly_cost_usd - previous.monthly_cost_usd
        lines.append(f"  since previous  {signed(delta)}/month "
                     f"({signed_size(row.stored_bytes - previous.stored_bytes)})")
    lines.append(f"  arn             {row.arn}")
    return "\n".join(lines)


def view_text(view: RepositoryView) -> str:
    """`repo NAME`: the detail, with what the base policy would do (as `/ecr-cost NAME` shows it)."""
    return repository_detail_text(view.row, view.rank, view.rank_of, view.previous, view.lifecycle_status,
                                  view.savings)


# -- lifecycle policy previews and the decision log -------------------------------------------

def usage_json(usage: Usage) -> dict:
    return {"kind": usage.kind, "name": usage.name, "account_id": usage.account_id, "region": usage.region}


def in_use_json(digest: str, tags: Sequence[str], used_by: Sequence[Usage]) -> dict:
    return {"image_digest": digest, "image_tags": list(tags), "used_by": [usage_json(u) for u in used_by]}


def preview_json(ref: RepositoryRef, result: Preview | None, savings: float, problems: Sequence[str] = (),
                 used: Mapping[str, Sequence[Usage]] | None = None, in_use: InUseSet | None = None,
                 images: Sequence[Image] = (), adopted: Preview | None = None,
                 adopted_savings: float | None = None) -> dict:
    """The contract's `policy preview --format json`; ``result`` is None for an invalid policy. ``in_use``: what
    runs in the repository (``in_use_expiring``: what the policy as written would expire of it), and
    ``adopted``: what the bot would really adopt, with every in-use image kept."""
    doc = {"repository": ref.name, "account_id": ref.account_id, "region": ref.region,
           "valid": result is not None, "errors": list(problems)}
    if result is None:
        return doc
    expiring = [d for d in result.decisions if d.action == "expire"]
    doc.update({
        "expiring": [decision_json_of(d) for d in result.decisions],
        "expiring_image_count": len(expiring),
        "remaining_image_count": result.remaining_image_count,
        "bytes_freed": result.bytes_freed,
        "monthly_savings_usd": round(savings, 4),
    })
    if in_use is not None:
        from ..core.inuse import RISKY_ACTIONS

        tags = {i.digest: i.tags for i in images}
        used = used or {}
        expiring_digests = {d.image.digest for d in result.decisions if d.action in RISKY_ACTIONS}  # or archive
        doc["in_use"] = [in_use_json(d, tags.get(d, ()), u) for d, u in sorted(used.items())]
        doc["in_use_expiring"] = [in_use_json(d, tags.get(d, ()), u) for d, u in sorted(used.items())
                                  if d in expiring_digests]
        doc["in_use_partial"] = in_use.partial
        doc["in_use_problems"] = [f"{p.source} in {p.account_id} {p.region}: {p.message}" for p in in_use.problems]
    if adopted is not None:  # what adopting does: the figures every other surface states
        doc["adopted_form"] = {"expiring": [decision_json_of(d) for d in adopted.decisions],
                               "expiring_image_count": sum(1 for d in adopted.decisions if d.action == "expire"),
                               "remaining_image_count": adopted.remaining_image_count,
                               "bytes_freed": adopted.bytes_freed,
                               "monthly_savings_usd": json_usd(adopted_savings or 0.0)}
    return doc


def decision_json_of(decision) -> dict:
    return {"image_digest": decision.image.digest, "image_tags": list(decision.image.tags),
            "image_pushed_at": iso(decision.image.pushed_at), "rule_priority": decision.rule_priority,
            "action": decision.action}


def in_use_table(items) -> str:
    """`in-use`: one line per image and place it runs."""
    if not items:
        return "no image is in use (or nothing could be read: see the warnings)"
    rows = [[item.row.repository, item.row.region, item.digest[7:19], ", ".join(item.tags) or "<untagged>",
             f"{u.kind} {u.name}", f"{u.account_id} {u.region}".strip()] for item in items for u in item.used_by]
    return "\n".join(text_table(["repository", "region", "digest", "tags", "used by", "runs in"], rows, right=set()))


def guard_item_json(item, with_rule: bool = True) -> dict:
    doc = {"repository": item.row.repository, "account_id": item.row.account_id, "region": item.row.region,
           "image_digest": item.digest}
    if with_rule:
        doc["rule_priority"] = item.rule_priority
        doc["action"] = item.action or "expire"
    doc["used_by"] = [usage_json(u) for u in item.used_by]
    return doc


def guard_json(result) -> dict:
    return {"at_risk": [guard_item_json(i) for i in result.at_risk],
            "protected": [guard_item_json(i, with_rule=False) for i in result.protected],
            "released": [guard_item_json(i, with_rule=False) for i in result.released],
            "partial": result.partial, "errors": list(result.errors)}


def guard_table(result) -> str:
    lines = [f"{plural(len(result.at_risk), 'in-use image')} at risk, {len(result.protected)} protected, "
             f"{len(result.released)} released" + (" - PARTIAL: some runtimes could not be read" if result.partial
                                                   else "")]
    if result.at_risk:
        rows = [[i.row.repository, i.row.region, i.digest[7:19], str(i.rule_priority),
                 "; ".join(f"{u.kind} {u.name}" for u in i.used_by)] for i in result.at_risk]
        lines += ["", "AT RISK (the repository's current policy would expire these running images):",
                  *text_table(["repository", "region", "digest", "rule", "used by"], rows, right={3})]
    lines += [f"error: {e}" for e in result.errors]
    return "\n".join(lines)


def preview_text(ref: RepositoryRef, adopted: Preview, savings: PolicySavings, source: str, limit: int = 50,
                 note: str = "") -> str:
    """`policy preview`: what adopting the policy does (its protected form, in-use images kept) and the images it
    expires; the policy as written only on a line that says so."""
    kept = " (in-use images kept)" if savings.in_use_checked else ""
    lines = [f"{ref.name} ({ref.account_id} {ref.region}), images from the {source}:",
             f"  adopting it{kept} {adopting_sentence(savings)}; {adopted.remaining_image_count} remain"]
    if (written := as_written_sentence(savings)) is not None:
        lines.append(f"  {written}")
    if note:
        lines.append(f"  {note}")
    transitions = sum(1 for d in adopted.decisions if d.action != "expire")
    if transitions:
        lines.append(f"  {plural(transitions, 'image')} would move to the archive storage class")
    if adopted.decisions:
        from ..core.inuse import is_pin

        rows = [[d.image.digest[7:19], ", ".join(t for t in d.image.tags if not is_pin(t)) or "<untagged>",
                 iso(d.image.pushed_at) or "?", str(d.rule_priority), d.action] for d in adopted.decisions[:limit]]
        lines += ["", *text_table(["digest", "tags", "pushed", "rule", "action"], rows, right={3})]
        if len(adopted.decisions) > limit:
            lines.append(f"... and {len(adopted.decisions) - limit} more (--format json lists them all)")
    return "\n".join(lines)


def decision_json(decision: PolicyDecision) -> dict:
    return {"id": decision.id, "repository": decision.repository, "account_id": decision.account_id,
            "region": decision.region, "action": decision.action, "user_id": decision.user_id,
            "source": decision.source, "at": iso(decision.at), "policy_before": decision.policy_before,
            "policy_after": decision.policy_after,
            "projected_monthly_savings_usd": None if decision.projected_monthly_savings_usd is None
            else round(decision.projected_monthly_savings_usd, 4),
            "owners_checked": list(decision.owners_checked), "undoes": decision.undoes, "reason": decision.reason,
            "note": decision.note, **({"images": json.loads(decision.images)} if decision.images else {})}


def sweep_table(run, told: bool) -> str:
    """`sweep`: per opted-in repository, what was announced (and until when), deleted, kept in use, and why not."""
    if not run.repositories:
        return "no repository opts in to the sweep (tag ecr-cost-expire-unpulled-days = N, or `ecr-cost-bot sweep " \
               "enable NAME --days N`)"
    verb = ("would announce", "would delete") if run.dry_run else ("announced", "deleted")
    lines = []
    for found in run.repositories:
        row = found.row
        lines.append(f"{row.repository} ({row.account_id} {row.region}), unpulled {found.unpulled_days} days: "
                     f"{verb[0]} {plural(len(found.announced), 'image')}"
                     + (f" ({size(found.announced_bytes)}, {per_month(found.announced_usd)}; deleted after "
                        f"{iso(found.deletes_after)})" if found.announced else "")
                     + f", {verb[1]} {len(found.deleted)}"
                     + (f" ({size(found.deleted_bytes)}, {per_month(found.deleted_usd)}, decision "
                        f"#{found.decision_id})" if found.decision_id else "")
                     + f", {len(found.kept_in_use)} kept in use")
        if found.announced and not run.dry_run:
            lines.append(f"  owners told: {', '.join(found.told) or 'nobody (no owner Slack knows)'}" if told else
                         "  owners NOT told (no SLACK_BOT_TOKEN): the announcement is recorded; images: "
                         + ", ".join(found.announced))
        lines += [f"  problem: {p}" for p in found.problems]
    if run.dry_run:
        lines.append("dry run: nothing was announced, recorded or deleted")
    return "\n".join(lines)


def decisions_table(decisions: Sequence[PolicyDecision]) -> str:
    if not decisions:
        return "no decisions yet"
    rows = [[str(d.id), iso(d.at) or "", d.action, d.repository, d.region, d.account_id, d.user_id, d.source,
             "" if d.projected_monthly_savings_usd is None else usd(d.projected_monthly_savings_usd),
             "; ".join(x for x in (d.reason, (d.note or "").replace("\n", " ")[:80]) if x)]
            for d in decisions]
    return "\n".join(text_table(["id", "at", "action", "repository", "region", "account", "user", "source",
                             "USD/month", "reason / note"], rows, right={0, 8}))


# -- why a repository is big ------------------------------------------------------------------------------

def size_json(report: SizeReport) -> dict:
    """The contract's `size --format json`."""
    row = report.row
    churn = report.churn
    return {
        "repository": row.repository, "account_id": row.account_id, "region": row.region,
        "stored_bytes": row.stored_bytes,
        "largest_images": [{"image_digest": i.digest, "image_tags": list(i.tags), "bytes": i.bytes,
                            "unique_bytes": i.unique_bytes} for i in report.largest_images],
        "layers": [{"digest": layer.digest, "bytes": layer.bytes, "image_count": layer.image_count,
                    "repository_count": layer.repository_count, "created_by": layer.created_by}
                   for layer in report.layers],
        "churn": {"pushes": churn.pushes, "median_new_bytes_per_push": churn.median_new_bytes_per_push,
                  "p90_new_bytes_per_push": churn.p90_new_bytes_per_push,
                  "new_bytes_per_week": churn.new_bytes_per_week},
        "advice": [{"text": a.text, "monthly_usd": round(a.monthly_usd, 4)} for a in report.advice],
        "base": None if report.base is None else {
            "name": report.base.name, "bytes": report.base.bytes, "layer_count": report.base.layer_count,
            "repository_count": report.base.repository_count},
        "notices": list(report.notices),
    }


def size_text(report: SizeReport, label: str | None = None) -> str:
    """`size NAME`: what the repository stores, where the bytes are, what each push adds, and what to do."""
    row, churn = report.row, report.churn
    lines = [f"{label or row.repository}  ({row.account_id} {row.region}): {size(row.stored_bytes)} stored, "
             f"{per_month(row.monthly_cost_usd)}, {plural(report.image_count, 'image')}"]
    if report.base is not None:
        lines.append(f"built on {report.base.name} ({size(report.base.bytes)}, "
                     f"{plural(report.base.layer_count, 'layer')}, in "
                     f"{plural(report.base.repository_count, 'repository')})")
    lines += ["", "advice, by what it costs now:"]
    lines += [f"  {n}. {a.text}" for n, a in enumerate(report.advice, 1)] or ["  nothing stands out"]
    lines += ["", f"churn over the last {plural(churn.pushes, 'push', 'pushes')}: median "
                  f"{size(churn.median_new_bytes_per_push)} new per push, p90 {size(churn.p90_new_bytes_per_push)}; "
                  f"{size(churn.new_bytes_per_week)} of new layers per week (last 28 days)", ""]
    rows = [[i.digest[7:19], ", ".join(i.tags) or "<untagged>", iso(i.pushed_at) or "?", size(i.bytes),
             size(i.unique_bytes)] for i in report.largest_images]
    lines += ["largest images:", *text_table(["digest", "tags", "pushed", "size", "unique"], rows, right={3, 4}), ""]
    rows = [[layer.digest[7:19], size(layer.bytes), str(layer.image_count), str(layer.repository_count),
             layer.created_by or "-"] for layer in report.layers]
    lines += ["largest layers:", *text_table(["digest", "size", "images", "repos", "created by"], rows,
                                             right={1, 2, 3})]
    lines += [f"note: {n}" for n in report.notices]
    return "\n".join(lines)


def cur_billing_json(billing) -> dict:
    """`billing --format json`: billed cost per repository from the CUR (core.billing.CurBilling)."""
    def rounded(amount):
        return None if amount is None else round(amount, 4)

    return {"source": billing.source, "currency": billing.currency,
            "period": {"start": billing.start.isoformat(), "end": billing.end.isoformat()},
            "repositories": [{"repository": r.repository, "account_id": r.account_id, "region": r.region,
                              "billed_usd": rounded(r.billed_usd), "billed_daily_usd": rounded(r.billed_daily_usd),
                              "estimate_daily_usd": rounded(r.estimate_daily_usd),
                              "difference_pct": None if r.difference_pct is None else round(r.difference_pct, 1)}
                             for r in billing.repositories],
            "unmatched_usd": round(billing.unmatched_usd, 4), "total_usd": round(billing.total_usd, 4)}


def cur_billing_table(billing) -> str:
    currency = billing.currency or "USD"
    rows = [[r.repository, r.region, r.account_id, f"{r.billed_usd:,.2f}",
             "-" if r.billed_daily_usd is None else f"{r.billed_daily_usd:,.4f}",
             "-" if r.estimate_daily_usd is None else f"{r.estimate_daily_usd:,.4f}",
             "-" if r.difference_pct is None else f"{r.difference_pct:+.0f}%"] for r in billing.repositories]
    lines = [f"billed ECR cost per repository from the CUR, {billing.start} to {billing.end} ({currency})", "",
             *text_table(["repository", "region", "account", "billed", "billed/day", "estimate/day", "difference"],
                         rows, right={3, 4, 5, 6}), "",
             f"total {billing.total_usd:,.2f} {currency}; unmatched (no scanned repository) "
             f"{billing.unmatched_usd:,.2f} {currency}"]
    lines += [f"  unmatched: {resource} {amount:,.2f}" for resource, amount in billing.unmatched[:10]]
    lines.append("billed/day: storage, the mean of the last 7 complete days in the CUR; billed: everything ECR "
                 "billed in the period (storage, data transfer ...)")
    return "\n".join(lines)
