"""The watch's findings, limits and creation templates: JSON, terminal text and Block Kit. Pure: data in, JSON out.

The action ids here are the watch's own (bot/slack/watch.py listens to them); the findings' other buttons are the
detail's (Adopt, Why so big?, Not now) and go to its listeners.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..core.models import RepositoryCost
from ..core.size import human
from ..core.watch import Finding, WatchResult
from ..format import per_month, plural, size
from . import blocks
from .text import iso, limit_text, problem_json, text_table, usd

MAX_FINDINGS_PER_MESSAGE = 15  # two blocks each, within Slack's 50
SET_LIMIT = blocks.SET_LIMIT
UNDO_LIMIT, APPLY_TEMPLATES = "undo_limit", "apply_creation_templates"
WATCH_ACTION_IDS = (SET_LIMIT, UNDO_LIMIT, APPLY_TEMPLATES)
LIMIT_VIEW = "set_limit_view"


def findings(result: WatchResult) -> Iterator[tuple[str, Finding]]:
    """(kind, finding), over-limit first."""
    yield from (("over_limit", f) for f in result.over_limit)
    yield from (("growth", f) for f in result.growth)
    yield from (("new_without_policy", f) for f in result.new_without_policy)
    yield from (("ineffective_policy", f) for f in result.ineffective_policies)


def _where(row: RepositoryCost) -> dict:
    return {"repository": row.repository, "account_id": row.account_id, "region": row.region}


def watch_json(result: WatchResult) -> dict:
    return {
        "generated_at": iso(result.generated_at), "previous_scan_at": iso(result.previous_at),
        "partial": result.partial, "errors": [problem_json(p) for p in result.errors],
        "warnings": list(result.warnings), "notes": list(result.notes),
        "growth": [{**_where(g.row), "bytes_before": g.bytes_before, "bytes_after": g.row.stored_bytes,
                    "monthly_cost_usd_before": round(g.monthly_cost_usd_before, 4),
                    "monthly_cost_usd_after": round(g.row.monthly_cost_usd, 4), "pushes": g.pushes,
                    "new_bytes": g.new_bytes,
                    "top_layers": [{"digest": layer.digest, "bytes": layer.bytes, "created_by": layer.created_by}
                                   for layer in g.top_layers]} for g in result.growth],
        "over_limit": [{**_where(o.row), "monthly_cost_usd": round(o.row.monthly_cost_usd, 4),
                        "limit_usd": round(o.limit_usd, 4), "source": o.source} for o in result.over_limit],
        "new_without_policy": [{**_where(n.row), "created_at": iso(n.row.created_at), "created_by": n.created_by,
                                "created_by_source": n.created_by_source, "owners": list(n.row.owners),
                                "monthly_cost_usd": round(n.row.monthly_cost_usd, 4)}
                               for n in result.new_without_policy],
        "ineffective_policies": [{**_where(i.row), "stale_images": i.stale_images, "stale_bytes": i.stale_bytes,
                                  "stale_monthly_usd": round(i.stale_monthly_usd, 4)}
                                 for i in result.ineffective_policies],
    }


def _size(byte_count: int) -> str:
    return human(byte_count)


def finding_line(kind: str, finding, mrkdwn: bool = False) -> str:
    """One finding in a sentence (Slack mrkdwn with ``mrkdwn``: names escaped and bold)."""
    row = finding.row
    name = f"*{blocks.escape(row.repository)}*" if mrkdwn else row.repository
    if kind == "over_limit":
        return f"{name} costs {usd(row.monthly_cost_usd)} of {per_month(finding.limit_usd)}: over its limit"
    if kind == "growth":
        layers = "; ".join(f"{_size(layer.bytes)}" + (f" ({layer.created_by})" if layer.created_by else "")
                           for layer in finding.top_layers[:3])
        text = (f"{name} grew from {_size(finding.bytes_before)} to {_size(row.stored_bytes)} "
                f"({usd(finding.monthly_cost_usd_before)} to {per_month(row.monthly_cost_usd)}): "
                f"{finding.pushes} {'push' if finding.pushes == 1 else 'pushes'}, {_size(finding.new_bytes)} new")
        return text + (f"; largest new layers: {blocks.escape(layers) if mrkdwn else layers}" if layers else "")
    if kind == "new_without_policy":
        who = finding.created_by or "unknown"
        who = blocks.escape(who) if mrkdwn else who
        created = blocks.date_text(row.created_at) if mrkdwn else iso(row.created_at)
        return (f"{name} is new (created {created} by {who}) and has no lifecycle policy: "
                f"{per_month(row.monthly_cost_usd)} so far")
    return (f"{name} has a lifecycle policy that expires nothing while {plural(finding.stale_images, 'image')} "
            f"nobody pulled or pushed in 90 days {'holds' if finding.stale_images == 1 else 'hold'} "
            f"{_size(finding.stale_bytes)}: {per_month(finding.stale_monthly_usd)}")


def watch_text(result: WatchResult) -> str:
    since = f" since the scan of {iso(result.previous_at)}" if result.previous_at else ""
    lines = [f"Watch of the scan of {iso(result.generated_at)}{since}"
             + (" (PARTIAL: some accounts or regions could not be read)" if result.partial else "")]
    lines += [f"note: {n}" for n in result.notes]
    sections: list[tuple[str, Sequence[Any], str]]
    sections = [("Over their limit", result.over_limit, "over_limit"), ("Grown", result.growth, "growth"),
                ("New without a lifecycle policy", result.new_without_policy, "new_without_policy"),
                ("Policies that expire nothing", result.ineffective_policies, "ineffective_policy")]
    for title, items, kind in sections:
        lines.append(f"\n{title}: {len(items)}")
        if kind == "growth" and items:
            lines += ["  " + line for line in text_table(
                ["repository", "region", "before", "after", "USD/month", "pushes", "new"],
                [[g.row.repository, g.row.region, size(g.bytes_before), size(g.row.stored_bytes),
                  usd(g.row.monthly_cost_usd), str(g.pushes), size(g.new_bytes)] for g in items],
                right={2, 3, 4, 5, 6})]
            for g in items:
                lines += [f"    {g.row.repository}: new layer {layer.digest[7:19]} {_size(layer.bytes)}"
                          + (f" ({layer.created_by})" if layer.created_by else "") for layer in g.top_layers]
        else:
            lines += [f"  {finding_line(kind, item)}" for item in items]
    lines += [f"\nwarning: {w}" for w in result.warnings]
    lines += [f"error: {e.account_id} {e.region}: {e.message}" for e in result.errors]
    return "\n".join(lines)


# -- Slack ----------------------------------------------------------------------------------------------------------

def _buttons(kind: str, row: RepositoryCost) -> list[dict]:
    arn = row.arn
    elements = []
    if kind in ("new_without_policy", "ineffective_policy") or (
            kind in ("over_limit", "growth") and not row.has_lifecycle_policy):
        current = "its current policy is backed up first" if row.has_lifecycle_policy else "it has no policy now"
        elements.append(blocks.button("Adopt the base policy", blocks.ADOPT, arn, "primary", blocks.confirm_dialog(
            "Adopt the base policy?", f"The base policy (in-use images kept) goes on {row.repository}; {current}, and "
                                      f"it can be rolled back in one click.", "Adopt")))
    elements.append(blocks.button("Set a limit…", SET_LIMIT, arn))
    if kind in ("over_limit", "growth", "ineffective_policy"):
        elements.append(blocks.button("Why so big?", blocks.WHY_BIG, arn))
    elements.append(blocks.button("Snooze 30 days", blocks.SNOOZE, arn))
    return elements


def owner_message(items: Sequence[tuple[str, Finding]], more: int = 0, unowned: bool = False) -> dict:
    """One direct message listing a person's findings, each with its buttons."""
    whose = "repositories nobody owns (you are an admin)" if unowned else "your ECR repositories"
    out = [blocks.header("ECR cost watch"),
           blocks.section(f"The daily watch found {len(items)} {'thing' if len(items) == 1 else 'things'} to look at "
                          f"in {whose}:")]
    for kind, finding in items:
        digest = hashlib.sha1(f"{kind}:{finding.row.arn}".encode()).hexdigest()
        out.append(blocks.section(f":small_orange_diamond: {finding_line(kind, finding, mrkdwn=True)}"
                                  f" ({blocks.escape(finding.row.account_id)} {blocks.escape(finding.row.region)})"))
        out.append({"type": "actions", "block_id": f"watch:{digest}", "elements": _buttons(kind, finding.row)})
    footer = "Each finding is sent once a day; *Snooze 30 days* silences a repository. `ecr-cost-bot watch` lists all."
    if more:
        footer = f"… and {more} more: `ecr-cost-bot watch`. " + footer
    out.append(blocks.context(footer))
    text = f"ECR cost watch: {plural(len(items), 'finding')} in {whose}"
    return {"text": blocks.clip(text, blocks.MAX_SECTION), "blocks": out[:blocks.MAX_BLOCKS]}


def channel_summary(result: WatchResult, limit: int = 20) -> dict:
    over = result.over_limit
    lines = [f"• *{blocks.escape(o.row.repository)}* ({blocks.escape(o.row.account_id)} {blocks.escape(o.row.region)})"
             f" {usd(o.row.monthly_cost_usd)} of {per_month(o.limit_usd)}" for o in over[:limit]]
    if len(over) > limit:
        lines.append(f"… and {len(over) - limit} more: `ecr-cost-bot watch`")
    out = [blocks.section(f":rotating_light: *{len(over)} {'repository is' if len(over) == 1 else 'repositories are'} "
                          f"over {'its' if len(over) == 1 else 'their'} monthly limit*"), *blocks.sections(lines)]
    if result.growth:
        out.append(blocks.context(f"{len(result.growth)} grew since the previous scan; their owners were told."))
    return {"text": f"{len(over)} ECR repositories over their limit", "blocks": out[:blocks.MAX_BLOCKS]}


def limit_modal(row: RepositoryCost, arn: str) -> dict:
    current = limit_text(row)
    value = row.tags.get("ecr-cost-limit-usd")
    element = {"type": "plain_text_input", "action_id": "limit", "max_length": 20,
               "placeholder": blocks.plain("e.g. 5.00", blocks.MAX_PLACEHOLDER)}
    if value:
        element["initial_value"] = value[:20]
    body = [
        blocks.section(f"A monthly limit for *{blocks.escape(row.repository)}* ({blocks.escape(row.account_id)} "
                       f"{blocks.escape(row.region)}), now *{per_month(row.monthly_cost_usd)}*"
                       + (f" ({blocks.escape(current)})" if current else "") + ". The daily watch tells the owners "
                       "when it is exceeded. It is stored as the repository tag `ecr-cost-limit-usd`; the change is "
                       "recorded and can be undone."),
        {"type": "input", "block_id": "limit", "optional": True, "label": blocks.plain("USD per month (empty: none)"),
         "element": element},
    ]
    return blocks.modal(LIMIT_VIEW, "Set a limit", body, arn, submit="Set")


def limit_done(row: RepositoryCost, text: str, undo: bool) -> dict:
    message = blocks.plain_message(text)
    if undo:
        message["blocks"].append({"type": "actions", "block_id": "limit:" + hashlib.sha1(row.arn.encode()).hexdigest(),
                                  "elements": [blocks.button("Undo", UNDO_LIMIT, row.arn)]})
    return message


def templates_button() -> dict:
    return {"type": "actions", "block_id": "templates", "elements": [blocks.button(
        "Default policy for new repositories", APPLY_TEMPLATES, "ROOT", confirm=blocks.confirm_dialog(
            "Apply the base policy to new repositories?",
            "Creates or updates the ROOT repository creation template of every account and region: repositories "
            "created by pull-through cache, replication and create-on-push get the base policy. Each template is "
            "backed up first; `ecr-cost-bot templates rollback --yes` undoes it.", "Apply"))]}


def template_changes_text(changes) -> str:
    if not changes:
        return "No account or region to change."
    return "\n".join(f"{c.account_id} {c.region}: {c.outcome}: {c.message}" for c in changes)


def templates_json(listing) -> dict:
    return {"places": [{"account_id": p.account_id, "region": p.region, "error": p.error,
                        "templates": [{"prefix": t.prefix, "applied_for": list(t.applied_for),
                                       "has_lifecycle_policy": t.lifecycle_policy is not None} for t in p.templates],
                        "lifecycle_policy_for": {k: p.covering(k) for k in ("PULL_THROUGH_CACHE", "REPLICATION",
                                                                            "CREATE_ON_PUSH")}}
                       for p in listing.places],
            "errors": [problem_json(p) for p in listing.problems]}


def templates_text(listing) -> str:
    rows = []
    for p in listing.places:
        if p.error:
            rows.append([p.account_id, p.region, "-", "-", "-", "-", p.error])
            continue
        covered = [p.covering(k) or "none" for k in ("PULL_THROUGH_CACHE", "REPLICATION", "CREATE_ON_PUSH")]
        rows.append([p.account_id, p.region, str(len(p.templates)), *covered, ""])
    lines = text_table(["account", "region", "templates", "pull-through cache", "replication", "create-on-push",
                        "problem"], rows, right={2})
    lines.append("A column names the template that gives repositories created that way a lifecycle policy (none: "
                 "they get none). Plain CreateRepository never uses a template: `ecr-cost-bot watch` finds those.")
    lines += [f"error: {e.account_id} {e.region}: {e.message}" for e in listing.problems]
    return "\n".join(lines)

