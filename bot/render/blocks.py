"""Block Kit messages and views, within Slack's limits for any estate. Pure: data in, JSON out.

Every piece of user-supplied text (repository names, tags, slash-command text) goes through
``escape`` so it cannot ping a channel or inject links and formatting.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

from ..core.analysis import Summary
from ..core.inuse import is_pin
from ..core.lifecycle import ARCHIVE_MINIMUM_DAYS, fingerprint
from ..core.models import EXEMPTION_REASONS, SLACK_USER_ID, PolicyDecision, RepositoryCost, RepositoryView
from ..core.size import SizeReport
from ..core.tuning import MAX_COUNT, MAX_DAYS, MAX_PREFIX
from ..format import per_day, per_month, plural, signed, size, slack_date, status
from .text import adopting_sentence, as_written_sentence, limit_text

MAX_BLOCKS, MAX_HOME_BLOCKS = 50, 100
MAX_SECTION, MAX_FIELD, MAX_HEADER, MAX_CONTEXT = 3000, 2000, 150, 2000
MAX_BUTTON_TEXT, MAX_BUTTON_VALUE, MAX_ACTION_ID = 75, 2000, 255
MAX_CONFIRM_TITLE, MAX_CONFIRM_TEXT, MAX_CONFIRM_BUTTON = 100, 300, 30

# action ids: the listeners register these exact names
ADOPT, PREVIEW, SNOOZE, DECLINE, ROLLBACK = "adopt_base_policy", "preview_policy", "snooze", "decline", "rollback"
ROLLBACK_OVER_HAND_EDIT = "rollback_over_hand_edit"  # the second confirmation when the policy was edited by hand
PROTECT = "protect_in_use"  # the guard's button: the repository's own policy, adopted in its protected form
# the second confirmations when some runtime could not be read (the in-use check is partial)
ADOPT_DESPITE_PARTIAL, PROTECT_DESPITE_PARTIAL = "adopt_despite_partial", "protect_despite_partial"
ADJUST, DELETE = "adjust_policy", "delete_repository"  # open a modal (Decline does too)
CLAIM, APPROVE_CLAIM, REJECT_CLAIM = "claim_ownership", "approve_claim", "reject_claim"
LIFT_EXEMPTION = "lift_exemption"
# the final safety check's confirmations: the policy about to be put would expire or archive running images
ADOPT_DESPITE_IN_USE, ROLLBACK_DESPITE_IN_USE = "adopt_despite_in_use", "rollback_despite_in_use"
PROTECT_DESPITE_IN_USE = "protect_despite_in_use"
ACTION_IDS: tuple[str, ...]  # grows below
ACTION_IDS = (ADOPT, PREVIEW, SNOOZE, DECLINE, ROLLBACK, ROLLBACK_OVER_HAND_EDIT, PROTECT, ADOPT_DESPITE_PARTIAL,
              PROTECT_DESPITE_PARTIAL, ADJUST, DELETE, CLAIM, APPROVE_CLAIM, REJECT_CLAIM, LIFT_EXEMPTION,
              ADOPT_DESPITE_IN_USE, ROLLBACK_DESPITE_IN_USE, PROTECT_DESPITE_IN_USE)
# modals: their callback ids, and the inputs of the Adjust modal (each change refreshes its preview)
ADJUST_VIEW, DECLINE_VIEW, DELETE_VIEW = "adjust_policy_view", "decline_view", "delete_repository_view"
TUNE_PREFIX = "tune_"  # the Adjust modal's input action ids: tune_untagged, tune_latest, ...
MAX_MODAL_TITLE, MAX_PRIVATE_METADATA, MAX_NOTE, MAX_PLACEHOLDER = 24, 3000, 500, 150
WHY_BIG = "why_so_big"  # anyone may look: the size analysis of a repository
SET_LIMIT = "set_limit"  # opens the limit modal (bot/slack/watch.py listens; not in ACTION_IDS)
ACTION_IDS += (WHY_BIG,)
SWEEP_KEEP, SWEEP_STOP = "sweep_keep", "sweep_stop"  # the sweep's announcement: pin the images / remove the opt-in
ACTION_IDS += (SWEEP_KEEP, SWEEP_STOP)
HOME_PREVIOUS, HOME_NEXT = "home_previous", "home_next"  # App Home's pages (value: the page to show)
SWEEP_DAYS = "sweep_days"  # the Adjust modal's optional "Also delete images nobody has pulled for N days"


def escape(text: str) -> str:
    """mrkdwn-safe: no mentions, links or entity tricks from user text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, never ending inside an escape entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def mention(user_id: str) -> str:
    """A Slack mention for a Slack user ID; anything else (a CLI user name, an email) as plain text."""
    return f"<@{user_id}>" if SLACK_USER_ID.match(user_id) else escape(user_id)


def owners_text(owners: Sequence[str]) -> str:
    return ", ".join(mention(o) if "@" not in o else escape(o) for o in owners) or "nobody (no owner tag)"


def date_text(moment: datetime | None) -> str:
    """A Slack date token (each reader sees their own time zone), or "never"."""
    return slack_date(moment)


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def sections(lines: Sequence[str]) -> list[dict]:
    """Lines packed into as few sections as fit 3,000 characters each."""
    packed: list[dict] = []
    chunk: list[str] = []
    for line in (clip(line, MAX_SECTION) for line in lines):
        if chunk and len("\n".join(chunk + [line])) > MAX_SECTION:
            packed.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        packed.append(section("\n".join(chunk)))
    return packed


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER), "emoji": True}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_CONTEXT)}]}


def button(text: str, action_id: str, value: str, style: str | None = None, confirm: dict | None = None) -> dict:
    element = {"type": "button", "text": {"type": "plain_text", "text": clip(text, MAX_BUTTON_TEXT)},
               "action_id": action_id[:MAX_ACTION_ID], "value": value[:MAX_BUTTON_VALUE]}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def confirm_dialog(title: str, text: str, confirm: str, deny: str = "Cancel") -> dict:
    return {"title": {"type": "plain_text", "text": clip(title, MAX_CONFIRM_TITLE)},
            "text": {"type": "plain_text", "text": clip(text, MAX_CONFIRM_TEXT)},
            "confirm": {"type": "plain_text", "text": clip(confirm, MAX_CONFIRM_BUTTON)},
            "deny": {"type": "plain_text", "text": clip(deny, MAX_CONFIRM_BUTTON)}}


def _detail_text(view: RepositoryView) -> str:
    row = view.row
    change = "" if view.change_usd is None else f" ({signed(view.change_usd)}/month since last week)"
    lines = [
        f"*{per_month(row.monthly_cost_usd)}*{change} · rank *#{view.rank}* of {view.rank_of}",
        f"*Stored* {size(row.stored_bytes)} (unique layers) · listed {size(row.listed_bytes)}",
        f"*Images* {row.image_count} ({row.tagged_image_count} tagged, {row.untagged_image_count} untagged)",
        f"*Last push* {date_text(row.last_pushed_at)} · *last pull* {date_text(row.last_pulled_at)}"
        + (" · :zzz: *unused*" if row.unused else ""),
        f"*Owners* {owners_text(row.owners)}",
        f"*Lifecycle policy* {escape(status(view.lifecycle_status))}",
    ]
    if (limit := limit_text(row)) is not None:
        lines.append(f"*Limit* {escape(limit)}")
    if view.savings is not None and view.lifecycle_status != "base":
        lines += base_policy_lines(view)
    if view.exemption is not None:
        by = f" by {mention(view.exemption.by)} {date_text(view.exemption.at)}" if view.exemption.by else ""
        lines.append(f"*Exempt* {escape(view.exemption.text)}{by}: no nudges, not counted in the base policy's "
                     f"savings")
    if view.billed is not None:
        lines.append(billed_line(view))
    lines += in_use_lines(view)
    return "\n".join(lines)


def base_policy_lines(view: RepositoryView) -> list[str]:
    """What adopting the base policy does (its protected form: in-use images kept), then the policy as written on a
    line that says so."""
    savings = view.savings
    assert savings is not None  # shown only with savings
    kept = " (in-use images kept)" if savings.in_use_checked else ""
    lines = [f"*Base policy* adopting it{kept} {adopting_sentence(savings, bold='*')}"]
    if (written := as_written_sentence(savings)) is not None:
        lines.append(f"_{written[:1].upper()}{written[1:]}: adopting through the bot keeps the running ones_"
                     if savings.written_in_use_expiring else f"_{written[:1].upper()}{written[1:]}_")
    return lines


def billed_line(view: RepositoryView) -> str:
    """What the CUR billed this repository per day (storage, mean of the last 7 complete days) against the estimate."""
    billed = view.billed
    assert billed is not None  # shown only with a bill
    shown = "nothing billed" if billed.billed_daily_usd is None else f"*{per_day(billed.billed_daily_usd)}*"
    estimate = "" if billed.estimate_daily_usd is None else f" · estimate {per_day(billed.estimate_daily_usd)}"
    difference = "" if billed.difference_pct is None else f" ({billed.difference_pct:+.0f}%)"
    return f"*Billed (CUR)* {shown}{estimate}{difference}"


def in_use_lines(view: RepositoryView, limit: int = 5) -> list[str]:
    """Where the repository's images run, what the base policy as written would have expired of them (the bot
    keeps them), and any runtime it could not see."""
    if view.in_use_count is None:
        return []
    lines = []
    if view.in_use_count:
        where = ", ".join(escape(w) for w in view.in_use_where[:limit]) + \
            (f" and {len(view.in_use_where) - limit} more" if len(view.in_use_where) > limit else "")
        lines.append(f"*In use* {plural(view.in_use_count, 'image')} ({where}): every adoption through the bot "
                     f"keeps them")
    else:
        lines.append("*In use* no image runs in ECS, Lambda or Kubernetes, nor was pulled lately")
    if view.in_use_blind:
        lines.append(f":warning: *In-use check partial*: {escape(view.in_use_blind[0])}"
                     + (f" (and {len(view.in_use_blind) - 1} more)" if len(view.in_use_blind) > 1 else ""))
    return lines


def decision_line(decision: PolicyDecision) -> str:
    verbs = {"adopted": "Base policy adopted", "tuned": "Tuned policy adopted", "rolled_back": "Rolled back",
             "declined": "Declined", "snoozed": "Snoozed for 30 days", "exemption_lifted": "Exemption lifted",
             "deleted": "Deleted", "claimed": "Ownership claim approved",
             "claim_rejected": "Ownership claim rejected", "sweep": "Unpulled images swept",
             "sweep_enabled": "Sweep of unpulled images turned on", "sweep_disabled": "Sweep turned off",
             "sweep_kept": "Announced images kept"}
    reason = f" ({escape(EXEMPTION_REASONS.get(decision.reason, decision.reason))})" if decision.reason else ""
    return (f"{verbs.get(decision.action, decision.action)}{reason} by {mention(decision.user_id)} "
            f"{date_text(decision.at)}")


def refusal(repository: str, owners: Sequence[str]) -> str:
    """``owners``: the owner tag as AWS has it now."""
    return (f"Only the owners ({owners_text(owners)}) or an admin can change *{escape(repository)}*. "
            f"Nothing was changed.")


def partial_message(arn: str, repository: str, problems: Sequence[str], protect: bool) -> dict:
    """An adoption refused because some runtime could not be read, and a second confirmation."""
    action = PROTECT_DESPITE_PARTIAL if protect else ADOPT_DESPITE_PARTIAL
    lines = [f"• {escape(p)}" for p in problems[:10]] + ([f"… and {len(problems) - 10} more"] if len(problems) > 10
                                                          else [])
    return {"text": clip(f"{repository}: the in-use check is partial; nothing was adopted", MAX_SECTION),
            "blocks": [
                section(f":warning: *Nothing was changed.* The bot could not see everything that runs, so images "
                        f"running there would not be kept by *{escape(repository)}*'s policy:"),
                *sections(lines),
                {"type": "actions", "block_id": "partial:" + hashlib.sha1(arn.encode()).hexdigest(), "elements": [
                    button("Adopt anyway", action, arn, "danger", confirm_dialog(
                        "Adopt with a partial in-use check?", "Images running where the bot cannot see are not "
                        "protected and may be expired. The current policy is backed up and can be rolled back.",
                        "Adopt anyway"))]}]}


def harm_message(value: str, repository: str, what: str, images: Sequence[str], action: str) -> dict:
    """A change refused by the final safety check: the running images the policy would expire or archive, and
    the explicit confirmation that names them. ``value``: the button's value (the repository, and what the person
    already confirmed)."""
    label = "Roll back anyway" if action == ROLLBACK_DESPITE_IN_USE else "Adopt anyway"
    lines = [f"• {escape(i)}" for i in images[:10]] + ([f"… and {len(images) - 10} more"] if len(images) > 10
                                                        else [])
    return {"text": clip(f"{repository}: {what} would expire running images; nothing was changed", MAX_SECTION),
            "blocks": [
                section(f":rotating_light: *Nothing was changed.* {escape(what[:1].upper() + what[1:])} of "
                        f"*{escape(repository)}* would expire or archive *{len(images)}* image(s) that run:"),
                *sections(lines),
                {"type": "actions", "block_id": "harm:" + hashlib.sha1(value.encode()).hexdigest(), "elements": [
                    button(label, action, value, "danger", confirm_dialog(
                        f"Expire {len(images)} running image(s)?", clip(
                            "ECR will expire or archive these running images: "
                            + "; ".join(i.split(" ", 1)[0] for i in images[:5])
                            + ". The next start that pulls them fails.", 290), label))]}]}


def hand_edit_message(arn: str, repository: str, live: str | None, expected: str | None) -> dict:
    """A rollback refused because the policy was edited by hand: both policies, and a second confirmation."""
    def shown(text: str | None) -> str:
        return "_none_" if text is None else f"```{clip(escape(text), 1200)}```"

    return {"text": clip(f"{repository}: its lifecycle policy was edited by hand; nothing was rolled back",
                         MAX_SECTION),
            "blocks": [
                section(f":warning: The lifecycle policy of *{escape(repository)}* was changed by hand after the bot "
                        f"last set it. Rolling back would overwrite that edit, so *nothing was changed*."),
                section(f"*In AWS now*\n{shown(live)}"),
                section(f"*What the bot last set*\n{shown(expected)}"),
                {"type": "actions", "block_id": "handedit:" + hashlib.sha1(arn.encode()).hexdigest(), "elements": [
                    # the value names the edit shown too: a later edit is shown again, never overwritten unseen
                    button("Roll back anyway", ROLLBACK_OVER_HAND_EDIT, f"{arn} {fingerprint(live)}", "danger",
                           confirm_dialog(
                        "Overwrite the hand edit?", "The policy in AWS now is backed up first, then the policy "
                        "before the latest adoption is restored.", "Roll back anyway"))]}]}


def guard_warning(row: RepositoryCost, items: Sequence, limit: int = 20) -> dict:
    """The guard's direct message: running images the repository's current policy would expire, and Protect."""
    lines = [f"`{i.digest[7:19]}` (rule {i.rule_priority}"
             + (": would move to the archive (unpullable until restored)" if i.action == "transition" else "")
             + ") used by "
             + ", ".join(f"{escape(u.kind)} {escape(u.name)}" for u in i.used_by[:3])
             + (f" and {len(i.used_by) - 3} more" if len(i.used_by) > 3 else "") for i in items[:limit]]
    if len(items) > limit:
        lines.append(f"… and {len(items) - limit} more (`ecr-cost-bot guard`)")
    blocks = [section(f":rotating_light: The lifecycle policy of *{escape(row.repository)}* ({escape(row.region)}) "
                      f"would expire *{plural(len(items), 'image')}* that {'is' if len(items) == 1 else 'are'} running"
                      + (" (or move them to the archive, unpullable until restored)"
                         if any(i.action == "transition" for i in items) else "")
                      + ". When ECR expires them, the next task start, scale-out or cold start fails with "
                        "\"manifest unknown\"."),
              *sections(lines)]
    if _rule_count(row.lifecycle_policy) >= 50:
        blocks.append(section("The policy already has 50 rules, ECR's maximum: remove one so that the bot can add "
                              "the rule that keeps running images, then press Protect in the next message."))
    else:
        blocks.append({"type": "actions", "block_id": "guard:" + hashlib.sha1(row.arn.encode()).hexdigest(),
                       "elements": [
                           button("Protect running images", PROTECT, row.arn, "primary", confirm_dialog(
                               "Protect the running images?", "Pins the running images with a tag and adds a first "
                               "rule that keeps pinned images to this repository's own policy. The current policy "
                               "is backed up first and can be rolled back in one click.", "Protect")),
                           button("Preview", PREVIEW, row.arn)]})
    return {"text": clip(f"{row.repository}: {plural(len(items), 'running image')} would be expired by its lifecycle "
                         f"policy",
                         MAX_SECTION), "blocks": blocks[:MAX_BLOCKS]}


def _rule_count(policy_text: str | None) -> int:
    try:
        rules = json.loads(policy_text or "{}").get("rules", [])
    except (ValueError, AttributeError, RecursionError):
        return 0
    return len(rules) if isinstance(rules, list) else 0


def repository_actions(view: RepositoryView) -> dict:
    """The buttons; their value names the repository, never who may press them."""
    arn = view.row.arn
    if view.adopted:
        elements = [button("Roll back", ROLLBACK, arn, "danger", confirm_dialog(
            "Roll back the policy?", f"Restores exactly the lifecycle policy {view.label} had before the "
            f"adoption (or none).", "Roll back")), button("Preview", PREVIEW, arn)]
    elif view.lifecycle_status == "base":  # the base policy is in force already: nothing to adopt or decline
        elements = [button("Adjust…", ADJUST, arn), button("Preview", PREVIEW, arn)]
    else:
        savings = "" if view.savings is None else (
            f"It {adopting_sentence(view.savings)}. ")
        kept = "Running images are kept. " if view.in_use_count else ""
        blind = "In-use check PARTIAL: some runtimes could not be read. " if view.in_use_blind else ""
        elements = [
            button("Adopt base policy", ADOPT, arn, "primary", confirm_dialog(
                "Adopt the base policy?",
                f"{blind}{savings}{kept}The current policy ({view.lifecycle_status}) of {view.label} is backed up "
                f"first and can be rolled back in one click.", "Adopt")),
            button("Adjust…", ADJUST, arn),
            button("Preview", PREVIEW, arn),
            button("Not now", SNOOZE, arn),
            button("Decline…", DECLINE, arn),
        ]
    elements.append(button("Set a limit…", SET_LIMIT, arn))
    if view.may_delete:
        elements.append(button("Delete repository…", DELETE, arn, "danger"))
    if not view.row.owners:
        elements.append(button("I own this", CLAIM, arn))
    if view.exemption is not None and view.exemption.source == "decision":
        elements.append(button("Lift exemption", LIFT_EXEMPTION, arn, confirm=confirm_dialog(
            "Lift the exemption?", f"{view.label} gets nudges again and counts in the base policy's savings. "
                                   f"Only admins can do this.", "Lift")))
    # unique per repository even for ARNs longer than a block_id may be
    return {"type": "actions", "block_id": "repo:" + hashlib.sha1(arn.encode()).hexdigest(), "elements": elements}


def repository_detail(view: RepositoryView) -> dict:
    """`/ecr-cost NAME`: the detail and the buttons."""
    row = view.row
    blocks = [
        header(f"{row.repository}"),
        context(f"{escape(row.account_id)} · {escape(row.region)} · scanned {date_text(view.scanned_at)}"),
        section(_detail_text(view)),
    ]
    if view.last_decision is not None:
        blocks.append(context(decision_line(view.last_decision)))
    blocks.append(why_big_section(row))
    blocks.append(repository_actions(view))
    text = f"{view.label}: {per_month(row.monthly_cost_usd)}, rank #{view.rank} of {view.rank_of}"
    return {"text": clip(text, MAX_SECTION), "blocks": blocks}


def ranking(rows: Sequence[RepositoryCost], labels: dict[str, str], summary: Summary, scanned_at: datetime,
            partial: bool, limit: int = 10, account: str | None = None) -> dict:
    """`/ecr-cost`: the top repositories by cost, with totals and a help line (``account``: narrowed to it)."""
    lines = [f"{i}. *{escape(labels[r.arn])}* ({escape(r.region)}) {size(r.stored_bytes)} · "
             f"*{per_month(r.monthly_cost_usd)}*{'' if r.has_lifecycle_policy else ' · no policy'}"
             f"{' · unused' if r.unused else ''}" for i, r in enumerate(rows[:limit], 1)]
    blocks = [
        header(f"ECR cost: top {min(limit, len(rows))} of {summary.repository_count} repositories"
               + (f" in {account}" if account else "")),
        section(f"*Total* {size(summary.stored_bytes)} stored · *{per_month(summary.monthly_cost_usd)}* · "
                f"median {per_month(summary.median_monthly_cost_usd)} · {len(summary.above_median)} above median · "
                f"{summary.without_policy} without a lifecycle policy · {summary.unused} unused"),
    ]
    blocks += sections(lines)
    if len(summary.accounts) > 1:
        blocks.append(context("*Top accounts* " + " · ".join(
            f"{escape(a.account_name or a.account_id)} {per_month(a.monthly_cost_usd)}" for a in summary.accounts[:5])
            + f" · {len(summary.accounts)} in all · `/ecr-cost account NAME`"))
    note = " · :warning: partial: some accounts or regions could not be read" if partial else ""
    blocks.append(context(f"scanned {date_text(scanned_at)}{note} · `/ecr-cost NAME` for a repository's detail "
                          f"and actions · `/ecr-cost help`"))
    text = (f"ECR cost: {plural(summary.repository_count, 'repository')}, {per_month(summary.monthly_cost_usd)}; "
            f"costliest: {', '.join(labels[r.arn] for r in rows[:3])}")
    return {"text": clip(text, MAX_SECTION), "blocks": blocks[:MAX_BLOCKS]}


HELP = ("*`/ecr-cost`* the costliest repositories and the estate's totals\n"
        "*`/ecr-cost NAME`* one repository (name, `region/name` or ARN): cost, rank, what the base policy "
        "would expire and save, and buttons to adopt it or *Adjust…* it with a live preview (owners and admins), "
        "preview it, snooze it, *Decline…* with a reason (an exemption), *Delete repository…* when unused, "
        "and *I own this* when it has no owner\n"
        "*`/ecr-cost account NAME`* the costliest repositories of one account (its name or ID)\n"
        "*`/ecr-cost help`* this help\n"
        "The base policy keeps 1 untagged image, 1 `latest*`, 9 `v*` and 20 images overall. Adopting it backs "
        "up the current policy first; *Roll back* restores it exactly.")


def help_message() -> dict:
    return {"text": "How to use /ecr-cost", "blocks": [section(HELP)]}


def plain_message(text: str) -> dict:
    """A short reply; ``text`` is already safe mrkdwn (escape user input before calling)."""
    return {"text": clip(text, MAX_SECTION), "blocks": [section(text)]}


def not_found(query: str, candidates: Sequence[str]) -> dict:
    hint = f" Did you mean: {', '.join(f'`{escape(c)}`' for c in candidates)}?" if candidates else ""
    return plain_message(f"No repository named `{escape(clip(query, 200))}`.{hint}")


def preview_message(view: RepositoryView, expiring: Sequence[tuple[str, Sequence[str], datetime | None, int]],
                    limit: int = 40, kept: Sequence[str] = ()) -> dict:
    """The images adopting the base policy would expire (its protected form: in-use images kept): (digest, tags,
    pushed at, rule priority); the policy as written on a line of its own (``kept``: the running images it would
    expire, which adopting keeps)."""
    lines = [f"`{digest[7:19]}` {escape(', '.join(t for t in tags if not is_pin(t))) or '_untagged_'} · pushed "
             f"{date_text(pushed)} · rule {rule}" for digest, tags, pushed, rule in expiring[:limit]]
    if len(expiring) > limit:
        lines.append(f"… and {len(expiring) - limit} more (`ecr-cost-bot policy preview {escape(view.label)}`)")
    savings = view.savings
    if savings is None:
        summary = f"Adopting the base policy on *{escape(view.label)}* would expire *{len(expiring)}* images."
    else:
        summary = f"Adopting the base policy on *{escape(view.label)}* {adopting_sentence(savings, bold='*')}."
        if (written := as_written_sentence(savings)) is not None:
            summary += (f"\n_{written[:1].upper()}{written[1:]}"
                        + (f": adopting through the bot keeps the {plural(len(kept), 'running image')}_" if kept
                           else "_"))
    blocks = [section(summary), *sections(lines)]
    return {"text": clip(f"Preview for {view.label}: adopting the base policy expires "
                         f"{plural(len(expiring), 'image')}", MAX_SECTION), "blocks": blocks[:MAX_BLOCKS]}


def home_view(own: Sequence[RepositoryView], summary: Summary, viewer_is_admin: bool, page: int = 0) -> dict:
    """App Home: the viewer's repositories with cost, status and buttons, and the estate's totals; a page at a time
    (Slack allows 100 blocks) with Previous and Next."""
    blocks = [header("ECR cost"),
              section(f"*Estate* {plural(summary.repository_count, 'repository')} · {size(summary.stored_bytes)} · "
                      f"*{per_month(summary.monthly_cost_usd)}* · {summary.without_policy} without a lifecycle "
                      f"policy · {summary.unused} unused")]
    if not own:
        blocks.append(section("You own no repository yet. Ask for your Slack user ID or email in the "
                              "repositories' owner tag, or try `/ecr-cost NAME`."
                              + (" As an admin you can act on any repository with `/ecr-cost NAME`."
                                 if viewer_is_admin else "")))
    per_repo = 4
    room = (MAX_HOME_BLOCKS - len(blocks) - 3) // per_repo  # the page line and its buttons stay in
    pages = max(1, -(-len(own) // room))
    page = min(max(page, 0), pages - 1)
    for view in own[page * room:(page + 1) * room]:
        row = view.row
        blocks += [{"type": "divider"},
                   section(f"*{escape(view.label)}* ({escape(row.region)}) · *{per_month(row.monthly_cost_usd)}* · "
                           f"rank #{view.rank} · policy: {escape(status(view.lifecycle_status))}"
                           + (f" · limit: {escape(limit)}" if (limit := limit_text(row)) else "")
                           + ("" if view.savings is None or view.lifecycle_status == "base"
                              else f" · adopting the base policy {adopting_sentence(view.savings)}")),
                   context(decision_line(view.last_decision) if view.last_decision else
                           f"{plural(row.image_count, 'image')} · last push {date_text(row.last_pushed_at)}"),
                   repository_actions(view)]
    if pages > 1:
        first = page * room + 1
        blocks.append(context(f"Your repositories {first:,}–{min(first + room - 1, len(own)):,} of {len(own):,}, "
                              f"costliest first (page {page + 1} of {pages})"))
        buttons = ([button("Previous", HOME_PREVIOUS, str(page - 1))] if page > 0 else []) + \
                  ([button("Next", HOME_NEXT, str(page + 1))] if page + 1 < pages else [])
        blocks.append({"type": "actions", "block_id": "home_pages", "elements": buttons})
    return {"type": "home", "blocks": blocks[:MAX_HOME_BLOCKS]}


# -- modals ------------------------------------------------------------------------------------

def plain(text: str, limit: int = MAX_SECTION) -> dict:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def modal(callback_id: str, title: str, blocks: list[dict], arn: str, submit: str | None = None) -> dict:
    """A modal; ``private_metadata`` names the repository only (never who may act: that is the signed user)."""
    view = {"type": "modal", "callback_id": callback_id, "title": plain(title, MAX_MODAL_TITLE),
            "close": plain("Cancel" if submit else "Close", MAX_MODAL_TITLE),
            "private_metadata": arn[:MAX_PRIVATE_METADATA],
            "blocks": blocks[:MAX_HOME_BLOCKS]}
    if submit:
        view["submit"] = plain(submit, MAX_MODAL_TITLE)
    return view


def notice_modal(title: str, text: str) -> dict:
    """What a submission did (or why it did nothing), in place of the form."""
    return {"type": "modal", "title": plain(title, MAX_MODAL_TITLE), "close": plain("Close", MAX_MODAL_TITLE),
            "blocks": [section(text)]}


def number_input(block_id: str, label: str, initial: str | None, maximum: int, optional: bool = False,
                 hint: str | None = None, minimum: int = 1) -> dict:
    element = {"type": "number_input", "action_id": TUNE_PREFIX + block_id, "is_decimal_allowed": False,
               "min_value": str(minimum), "max_value": str(maximum),
               "dispatch_action_config": {"trigger_actions_on": ["on_character_entered"]}}
    if initial:
        element["initial_value"] = initial
    block = {"type": "input", "block_id": block_id, "dispatch_action": True, "optional": optional,
             "label": plain(label, 2000), "element": element}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def tuning_preview_text(savings, in_use_count: int, partial: bool, archiving: tuple[int, int] = (0, 0),
                        archive_saves: bool = False) -> str:
    """The Adjust form's preview: what adopting the tuned policy does (in-use images kept), the same sentence as
    every other surface; the policy as written on a line that says so; images it archives (count, bytes), never
    counted as a saving."""
    written = as_written_sentence(savings)
    kept = (f"\n:shield: {plural(in_use_count, 'image')} in use: adopting keeps them" if in_use_count
            else "\nNo image is in use")
    blind = "\n:warning: In-use check partial: images running where the bot cannot see are not kept" if partial else ""
    return (f"*Preview* adopting it {adopting_sentence(savings, bold='*')}{kept}"
            + (f"\n_{written[:1].upper()}{written[1:]}_" if written else "") + archiving_line(*archiving, archive_saves)
            + blind)


def archiving_line(count: int, byte_count: int, saves: bool) -> str:
    """Images a policy moves to the archive: still stored and billed, so not in the savings figure."""
    if not count:
        return ""
    why = ("archive storage costs less only beyond the 150 TB tier" if saves
           else "archive storage costs the same as standard here")
    return (f"\n:package: {plural(count, 'image')} ({size(byte_count)}) would move to the archive, unpullable until "
            f"restored: not counted as a saving ({why}); they go only when the archive rule deletes them")


def adjust_modal(repository: str, arn: str, values: dict[str, str | None], preview_text: str) -> dict:
    """Adjust and adopt: the base policy's numbers, each change refreshing the preview (``views.update``)."""
    value = lambda name: values.get(name) or None  # noqa: E731
    blocks = [
        section(f"Tune the base policy for *{escape(repository)}*. The current policy is backed up first and "
                f"*Roll back* restores it; in-use images are always kept."),
        number_input("untagged", "Keep untagged images (how many)", value("untagged"), MAX_COUNT),
        number_input("latest", "Keep images tagged latest (how many)", value("latest"), MAX_COUNT),
        {"type": "input", "block_id": "prefix", "dispatch_action": True, "label": plain("Version tag prefix"),
         "hint": plain("Your release tags start with it, e.g. v for v1.4.2"),
         "element": {"type": "plain_text_input", "action_id": TUNE_PREFIX + "prefix", "max_length": MAX_PREFIX,
                     "dispatch_action_config": {"trigger_actions_on": ["on_character_entered"]},
                     **({"initial_value": values["prefix"]} if values.get("prefix") else {})}},
        number_input("versions", "Keep versions: images tagged with the prefix (how many)", value("versions"),
                     MAX_COUNT),
        number_input("overall", "Keep overall: images of any tag (how many)", value("overall"), MAX_COUNT),
        number_input("untagged_days", "Optional: expire untagged images older than N days", value("untagged_days"),
                     MAX_DAYS, optional=True, hint="Replaces the untagged count: ECR allows one rule for untagged "
                                                    "images."),
        {"type": "section", "block_id": "preview", "text": {"type": "mrkdwn", "text": clip(preview_text, MAX_SECTION)}},
        *sweep_inputs(values.get(SWEEP_DAYS)),
        *archive_inputs(values),
    ]
    return modal(ADJUST_VIEW, "Adjust the policy", blocks, arn, submit="Adopt")


def archive_inputs(values: dict[str, str | None]) -> list[dict]:
    """ECR's own archive rules, optional, and beside them the estate's archive economics (the owner may archive
    even where it saves nothing: the note says so)."""
    found = [
        number_input("archive_days", "Optional: archive images nobody has pulled for N days", values.get("archive_days")
                     or None, MAX_DAYS, optional=True,
                     hint="ECR's transition rule. Replaces the overall count: ECR allows one rule over images of any "
                          "tag. Archived images cannot be pulled until restored (about $0.03/GB); in-use, latest "
                          "and version images are never archived."),
        number_input("archive_expire_days", "Optional: delete archived images after M days",
                     values.get("archive_expire_days") or None, MAX_DAYS, optional=True, minimum=ARCHIVE_MINIMUM_DAYS,
                     hint=f"At least {ARCHIVE_MINIMUM_DAYS}: ECR bills an archived image {ARCHIVE_MINIMUM_DAYS} days "
                          f"at least, and its lifecycle cannot delete one archived for less."),
    ]
    if values.get("archive_note"):
        found.append(context(escape(values["archive_note"] or "")))
    return found


def sweep_inputs(days: str | None) -> list[dict]:
    """The Adjust modal's sweep opt-in (not a lifecycle rule: ECR refuses to expire by last pull)."""
    element = {"type": "number_input", "action_id": SWEEP_DAYS, "is_decimal_allowed": False, "min_value": "1",
               "max_value": "3650", **({"initial_value": days} if days else {})}
    found = [{"type": "input", "block_id": SWEEP_DAYS, "optional": True, "element": element,
              "label": plain("Also delete images nobody has pulled for N days", 2000),
              "hint": plain("The bot's sweep: the owners are told a week ahead; images in use, pinned, or the newest "
                            "are never deleted. Empty: no change.", 2000)}]
    return found


def sweep_announcement(found) -> dict:
    """The sweep's direct message to an owner: what will be deleted and when, Keep these / Stop sweeping."""
    row = found.row
    when = date_text(found.deletes_after)
    text = (f":broom: *{plural(len(found.announced), 'image')}* of *{escape(row.repository)}* "
            f"({escape(row.account_id)} "
            f"{escape(row.region)}) nobody has pulled for {found.unpulled_days} days will be deleted after {when}: "
            f"{size(found.announced_bytes)}, *{per_month(found.announced_usd)}*. Images in use, pinned, or the "
            f"newest are never deleted; each one is checked again just before. Every deleted image's digest, tags "
            f"and manifest are kept in the decision log.")
    lines = [f"`{d[7:19]}`" for d in found.announced[:20]]
    if len(found.announced) > 20:
        lines.append(f"… and {len(found.announced) - 20} more (`ecr-cost-bot sweep --dry-run`)")
    return {"text": clip(f"{escape(row.repository)}: {plural(len(found.announced), 'unpulled image')} to be deleted",
                         MAX_SECTION),
            "blocks": [section(text), *sections([", ".join(lines)]),
                       {"type": "actions", "block_id": f"sweep:{found.batch}", "elements": [
                           button("Keep these", SWEEP_KEEP, found.batch or "", "primary"),
                           button("Stop sweeping", SWEEP_STOP, row.arn, confirm=confirm_dialog(
                               "Stop sweeping?", f"Removes the {row.repository} opt-in tag: nothing more is "
                               f"announced or deleted there.", "Stop sweeping"))]}][:MAX_BLOCKS]}


def decline_modal(repository: str, arn: str) -> dict:
    """Decline: why (compliance, data retention, other) and the person's own words."""
    options = [{"text": plain(label.capitalize()), "value": key} for key, label in EXEMPTION_REASONS.items()]
    blocks = [
        section(f"Exempt *{escape(repository)}* from the base policy: it gets no more nudges and is listed in the "
                f"weekly report with your reason. An admin can lift the exemption."),
        {"type": "input", "block_id": "reason", "label": plain("Why"),
         "element": {"type": "static_select", "action_id": "reason", "options": options,
                     "placeholder": plain("Compliance, data retention, other")}},
        {"type": "input", "block_id": "note", "optional": True, "label": plain("Note (optional)"),
         "element": {"type": "plain_text_input", "action_id": "note", "multiline": True, "max_length": MAX_NOTE}},
    ]
    return modal(DECLINE_VIEW, "Decline the policy", blocks, arn, submit="Exempt")


def delete_modal(row: RepositoryCost, arn: str) -> dict:
    """Delete an unused repository: what it frees, and the name typed to confirm."""
    blocks = [
        section(f":warning: Deleting *{escape(row.repository)}* ({escape(row.account_id)} {escape(row.region)}) "
                f"removes its *{plural(row.image_count, 'image')}*, *{size(row.stored_bytes)}*, and saves "
                f"*{per_month(row.monthly_cost_usd)}*. It cannot be undone in AWS: first every image's digest, "
                f"tags, push and pull times and manifest are exported, kept by the bot and sent to you as a file."),
        {"type": "input", "block_id": "confirm_name", "label": plain("Type the repository's name to confirm"),
         "element": {"type": "plain_text_input", "action_id": "confirm_name", "max_length": 256,
                     "placeholder": plain(row.repository, MAX_PLACEHOLDER)}},
    ]
    return modal(DELETE_VIEW, "Delete repository", blocks, arn, submit="Delete")


def claim_request(claim_id: int, row: RepositoryCost, claimer: str) -> dict:
    """The admins' direct message: a claim to approve or reject."""
    tag = escape(", ".join(f"{k}={v}" for k, v in row.tags.items()) or "none")
    return {"text": clip(f"{claimer} claims {row.repository}", MAX_SECTION), "blocks": [
        section(f"{mention(claimer)} says they own *{escape(row.repository)}* ({escape(row.account_id)} "
                f"{escape(row.region)}, *{per_month(row.monthly_cost_usd)}*), which has no valid owner tag "
                f"(tags: {tag}). Approving sets its owner tag to {mention(claimer)}."),
        {"type": "actions", "block_id": f"claim:{claim_id}", "elements": [
            button("Approve", APPROVE_CLAIM, str(claim_id), "primary"),
            button("Reject", REJECT_CLAIM, str(claim_id), "danger")]}]}


# -- why a repository is big ------------------------------------------------------------------------------

def why_big_section(row: RepositoryCost) -> dict:
    """The "Why so big?" button (anyone may press it): its own section, beside the owners' buttons."""
    return {"type": "section", "block_id": "size:" + hashlib.sha1(row.arn.encode()).hexdigest(),
            "text": {"type": "mrkdwn", "text": "Largest images and layers, what each push adds, the base, advice"},
            "accessory": button("Why so big?", WHY_BIG, row.arn)}


def size_message(report: SizeReport, label: str | None = None, images: int = 5, layers: int = 8) -> dict:
    """The answer to "Why so big?": advice first (by $/month), then churn, the base, top images and layers."""
    row, churn = report.row, report.churn
    name = escape(label or row.repository)
    head = (f"*Why is {name} so big?* {size(row.stored_bytes)} stored, *{per_month(row.monthly_cost_usd)}*, "
            f"{plural(report.image_count, 'image')}")
    if report.base is not None:
        head += (f"\nBuilt on *{escape(report.base.name)}* ({size(report.base.bytes)}, in "
                 f"{report.base.repository_count} repositories)")
    advice = [f"{n}. {escape(a.text)}" for n, a in enumerate(report.advice, 1)] or ["Nothing stands out."]
    churn_line = (f"*Each push* over the last {churn.pushes}: median {size(churn.median_new_bytes_per_push)} new, "
                  f"p90 {size(churn.p90_new_bytes_per_push)}; *{size(churn.new_bytes_per_week)} of new layers "
                  f"a week* (last 28 days)")
    image_lines = [f"`{i.digest[7:19]}` {escape(', '.join(i.tags)) or '_untagged_'} · {size(i.bytes)} · "
                   f"{size(i.unique_bytes)} its own · pushed {date_text(i.pushed_at)}"
                   for i in report.largest_images[:images]]
    layer_lines = [f"`{layer.digest[7:19]}` {size(layer.bytes)} · in {plural(layer.image_count, 'image')}, "
                   f"{layer.repository_count} repositories"
                   + (f" · `{escape(clip(layer.created_by, 200))}`" if layer.created_by else "")
                   for layer in report.layers[:layers]]
    blocks = [section(head), *sections(["*Advice* (by what it costs now)", *advice]), section(churn_line),
              *sections(["*Largest images*", *image_lines]), *sections(["*Largest layers*", *layer_lines])]
    if report.notices:
        blocks.append(context(" · ".join(escape(n) for n in report.notices[:5])))
    blocks.append(context(f"`ecr-cost-bot size {escape(label or row.repository)}` for the full list"))
    text = f"Why is {label or row.repository} so big? {size(row.stored_bytes)}, {per_month(row.monthly_cost_usd)}"
    return {"text": clip(text, MAX_SECTION), "blocks": blocks[:MAX_BLOCKS]}
