"""Buttons: Adopt base policy, Adjust…, Preview, Not now, Decline…, Roll back (and Roll back over a hand edit),
Protect, Why so big?, Delete repository…, I own this (and the admins' Approve / Reject), Lift exemption.

A button's value only names the repository (or an ownership claim); who may act is decided from the signed user
and the owner tag as AWS has it at the click. A click is acted on at most once (Slack retries and double clicks
included). Adjust…, Decline… and Delete repository… open a modal (bot/slack/views.py handles its submission).
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from ..application import Application, ref_of
from ..errors import (
    BotError,
    HandEdited,
    HarmsInUse,
    HasOwners,
    InUsePartial,
    NotAnAdmin,
    NotAnOwner,
    describe,
)
from ..gate import Actor
from ..render import blocks
from .directory import SlackDirectory
from .home import home_view
from .views import refresh_adjust

ACTIONS = re.compile(f"^({'|'.join(map(re.escape, blocks.ACTION_IDS))})$")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """The answer to a click: a message replacing the original, and/or an ephemeral note or message."""

    replace: dict | None = None
    ephemeral: str | None = None
    ephemeral_message: dict | None = None
    modal: dict | None = None  # a form to open with the click's trigger_id
    preview_after_open: bool = False  # the Adjust form: its preview follows once the form is open
    direct: tuple[tuple[str, dict], ...] = ()  # (user ID, message): direct messages to send


def decide_claim(application: Application, directory: SlackDirectory, value: str, user_id: str,
                 approve: bool) -> Outcome:
    """An admin's Approve or Reject of an ownership claim; the claimer hears the outcome."""
    try:
        claim_id = int(value)
    except ValueError:
        claim_id = 0
    if not 0 < claim_id < 2**63:  # SQLite's integers
        return Outcome(ephemeral="That is not an ownership claim; nothing was changed.")
    try:
        ref, claimer, _ = application.claim_of(claim_id)
        change = application.decide_claim(claim_id, approve, directory.actor(user_id))
    except HasOwners as exc:
        text = (f"*{blocks.escape(exc.ref.name)}* got owners meanwhile ({blocks.owners_text(exc.owners)}); the claim "
                f"was not applied.")
        return Outcome(replace=blocks.plain_message(text), direct=((claimer, blocks.plain_message(text)),))
    except BotError as exc:
        return Outcome(ephemeral=f":x: {blocks.escape(describe(exc))}")
    if change.decision is None:
        return Outcome(ephemeral=blocks.escape(change.note or "Nothing was changed."))
    name = blocks.escape(ref.name)
    if approve:
        done = (f":white_check_mark: {blocks.mention(claimer)} now owns *{name}*: "
                f"owner tag set by {blocks.mention(user_id)}.")
        told = (f"Your claim on *{name}* was approved by {blocks.mention(user_id)}: you are its owner now. "
                f"`/ecr-cost {name}` shows its cost and what a lifecycle policy would save.")
    else:
        done = f"The claim of {blocks.mention(claimer)} on *{name}* was rejected by {blocks.mention(user_id)}."
        told = f"Your claim on *{name}* was rejected by {blocks.mention(user_id)}."
    return Outcome(replace=blocks.plain_message(done), direct=((claimer, blocks.plain_message(told)),))


def act(application: Application, directory: SlackDirectory, action_id: str, value: str, user_id: str,
        click_id: str) -> Outcome:
    """A click's outcome, decided (and any change made) without touching Slack; on_click delivers it."""
    if action_id in (blocks.APPROVE_CLAIM, blocks.REJECT_CLAIM):
        if not application.first_delivery(click_id):
            return Outcome()
        return decide_claim(application, directory, value, user_id, approve=action_id == blocks.APPROVE_CLAIM)
    if action_id in (blocks.SWEEP_KEEP, blocks.SWEEP_STOP):
        return sweep_click(application, directory, action_id, value, user_id, click_id)
    arn, _, seen_edit = value.partition(" ")  # Roll back anyway also names the hand edit the person saw
    found = application.find_by_arn(arn)
    if found is None:
        return Outcome(ephemeral="That repository is no longer in the latest scan; nothing was changed.")
    scan, row = found
    if action_id in (blocks.PREVIEW, blocks.WHY_BIG):  # anyone may look
        return look(application, action_id, scan, row)
    # the forms open for anyone; who may act is decided when one is submitted, from the live owner tag
    if action_id in (blocks.ADJUST, blocks.DECLINE, blocks.DELETE):
        return form(application, action_id, scan, row)
    if not application.first_delivery(click_id):
        return Outcome()  # the same click delivered again: already handled
    if action_id == blocks.CLAIM:
        return claim(application, directory, row, user_id)
    return change(application, directory.actor(user_id), action_id, row, seen_edit)


def look(application: Application, action_id: str, scan, row) -> Outcome:
    """Preview and Why so big?: what the policy would expire, or where the bytes are (anyone may look)."""
    if action_id == blocks.PREVIEW:
        try:
            view, expiring, kept = application.expiring(row, scan)
        except BotError as exc:
            return Outcome(ephemeral=f":x: {blocks.escape(describe(exc))}")
        return Outcome(ephemeral_message=blocks.preview_message(
            view, [(d.image.digest, d.image.tags, d.image.pushed_at, d.rule_priority) for d in expiring], kept=kept))
    try:
        report = application.size(scan, row)
    except BotError as exc:
        return Outcome(ephemeral=f":x: Could not work out why {blocks.escape(row.repository)} is big: "
                                 f"{blocks.escape(describe(exc))}")
    except Exception as exc:  # noqa: BLE001 - the person who clicked gets an answer, not silence
        logger.exception("size of %s failed", row.arn)
        return Outcome(ephemeral=f":x: Could not work out why {blocks.escape(row.repository)} is big: "
                                 f"{blocks.escape(exc.__class__.__name__)}")
    return Outcome(ephemeral_message=blocks.size_message(report, application.labels(scan).get(row.arn)))


def form(application: Application, action_id: str, scan, row) -> Outcome:
    """Adjust…, Decline… and Delete repository…: the modal to open (bot/slack/views.py handles its submission)."""
    if action_id == blocks.ADJUST:
        values = {k: (str(v) if v is not None else None) for k, v in application.base_tuning().as_dict().items()}
        values["archive_note"] = application.sweep.archive_note(scan) if application.sweep else None
        return Outcome(modal=blocks.adjust_modal(row.repository, row.arn, values, "_Computing the preview…_"),
                       preview_after_open=True)
    if action_id == blocks.DECLINE:
        return Outcome(modal=blocks.decline_modal(row.repository, row.arn))
    return Outcome(modal=blocks.delete_modal(row, row.arn))


def change(application: Application, actor: Actor, action_id: str, row, seen_edit: str) -> Outcome:
    """Adopt, Roll back, Protect, Not now and Lift exemption, by the signed user; a refusal or a question
    (in use, partly checked, hand edited) comes back as an ephemeral message."""
    despite_in_use = action_id in (blocks.ADOPT_DESPITE_IN_USE, blocks.ROLLBACK_DESPITE_IN_USE,
                                   blocks.PROTECT_DESPITE_IN_USE)
    # what the person already confirmed travels in the value: "partial", or the hand edit's fingerprint
    partial = action_id in (blocks.ADOPT_DESPITE_PARTIAL, blocks.PROTECT_DESPITE_PARTIAL) or \
        (despite_in_use and seen_edit == "partial")
    try:
        if action_id in (blocks.ADOPT, blocks.ADOPT_DESPITE_PARTIAL, blocks.ADOPT_DESPITE_IN_USE):
            done = application.adopt(row, actor, despite_partial=partial, despite_in_use=despite_in_use)
        elif action_id in (blocks.ROLLBACK, blocks.ROLLBACK_OVER_HAND_EDIT, blocks.ROLLBACK_DESPITE_IN_USE):
            forced = action_id == blocks.ROLLBACK_OVER_HAND_EDIT or (despite_in_use and bool(seen_edit))
            done = application.rollback(row, actor, force=forced, over=seen_edit if forced else None,
                                        despite_in_use=despite_in_use)
        elif action_id in (blocks.PROTECT, blocks.PROTECT_DESPITE_PARTIAL, blocks.PROTECT_DESPITE_IN_USE):
            done = application.protect(row, actor, despite_partial=partial, despite_in_use=despite_in_use)
        elif action_id == blocks.SNOOZE:
            done = application.snooze(row, actor)
        elif action_id == blocks.LIFT_EXEMPTION:
            done = application.lift_exemption(row, actor)
        else:
            return Outcome(ephemeral=f"Unknown action {blocks.escape(action_id)}; nothing was changed.")
    except NotAnOwner as exc:
        return Outcome(ephemeral=blocks.refusal(row.repository, exc.owners))
    except NotAnAdmin as exc:
        message = blocks.escape(describe(exc))
        return Outcome(ephemeral=f"{message[:1].upper()}{message[1:]}.")
    except InUsePartial as exc:
        return Outcome(ephemeral_message=blocks.partial_message(row.arn, row.repository, exc.problems,
                                                                protect=action_id == blocks.PROTECT))
    except HarmsInUse as exc:
        rollback = action_id in (blocks.ROLLBACK, blocks.ROLLBACK_OVER_HAND_EDIT)
        confirm = blocks.ROLLBACK_DESPITE_IN_USE if rollback else blocks.PROTECT_DESPITE_IN_USE \
            if action_id in (blocks.PROTECT, blocks.PROTECT_DESPITE_PARTIAL) else blocks.ADOPT_DESPITE_IN_USE
        seen = (seen_edit if action_id == blocks.ROLLBACK_OVER_HAND_EDIT else "") if rollback \
            else ("partial" if partial else "")
        return Outcome(ephemeral_message=blocks.harm_message(f"{row.arn} {seen}".strip(), row.repository, exc.what,
                                                             exc.images, confirm))
    except HandEdited as exc:
        return Outcome(ephemeral_message=blocks.hand_edit_message(row.arn, row.repository, exc.live, exc.expected))
    except BotError as exc:  # a refused change (with its problems), or AWS's refusal
        problems = "".join(f"\n• {blocks.escape(p)}" for p in getattr(exc, "problems", ()))
        return Outcome(ephemeral=f":x: {blocks.escape(describe(exc))}{problems}")
    after = application.view_after_change(row.arn)
    note = None if done.note is None else blocks.escape(done.note)
    return Outcome(replace=None if after is None else blocks.repository_detail(after), ephemeral=note)


def sweep_click(application: Application, directory: SlackDirectory, action_id: str, value: str, user_id: str,
                click_id: str) -> Outcome:
    """The sweep announcement's buttons: Keep these (pins the announced images) and Stop sweeping (removes the
    opt-in). Owners and admins only, decided from the owner tag as AWS has it now."""
    if not application.first_delivery(click_id):
        return Outcome()
    def ref(arn: str):
        found = application.find_by_arn(arn)
        return None if found is None else ref_of(found[1])

    actor = directory.actor(user_id)
    assert application.sweep is not None  # set by wiring
    try:
        if action_id == blocks.SWEEP_KEEP:
            change = application.sweep.keep(value, actor, ref)
        else:
            target = ref(value)
            if target is None:
                return Outcome(ephemeral="That repository is no longer in the latest scan; nothing was changed.")
            change = application.sweep.disable(target, actor)
    except NotAnOwner as exc:
        return Outcome(ephemeral=blocks.refusal(exc.ref.name, exc.owners))
    except BotError as exc:
        return Outcome(ephemeral=f":x: {blocks.escape(describe(exc))}")
    decision = change.decision
    if decision is None:
        return Outcome(ephemeral=blocks.escape(change.note or "Nothing was changed."))
    name = blocks.escape(decision.repository)
    if action_id == blocks.SWEEP_KEEP:
        text = (f":pushpin: {blocks.mention(user_id)} kept the announced images of *{name}*: they carry the bot's "
                f"pin tag now and the sweep never deletes them.")
    else:
        text = (f":octagonal_sign: {blocks.mention(user_id)} stopped the sweep of *{name}*: nothing more is announced "
                f"or deleted there. The Adjust dialog or `ecr-cost-bot sweep enable {name} --days N` turns it on "
                f"again.")
    return Outcome(replace=blocks.plain_message(text))


def claim(application: Application, directory: SlackDirectory, row, user_id: str) -> Outcome:
    """I own this: the admins get a direct message to approve or reject."""
    admins = directory.admins
    if not admins:
        return Outcome(ephemeral="No admin is configured (ECR_COST_ADMINS), so nobody can approve a claim; ask "
                                 "whoever manages the AWS account to set the repository's owner tag.")
    try:
        claim_id, new = application.claim_ownership(row, user_id)
    except HasOwners as exc:
        return Outcome(ephemeral=f"*{blocks.escape(row.repository)}* already has owners "
                                 f"({blocks.owners_text(exc.owners)}); ask them. Nothing was changed.")
    except BotError as exc:
        return Outcome(ephemeral=f":x: {blocks.escape(describe(exc))}")
    who = ", ".join(blocks.mention(a) for a in admins)
    if not new:
        return Outcome(ephemeral=f"You already claimed *{blocks.escape(row.repository)}*; the admins ({who}) have "
                                 f"your request.")
    request = blocks.claim_request(claim_id, row, user_id)
    return Outcome(ephemeral=f"Asked the admins ({who}) to approve your claim on *{blocks.escape(row.repository)}*; "
                             f"you will get a message when one of them decides.",
                   direct=tuple((admin, request) for admin in admins))


def register(app: App, application: Application, directory: SlackDirectory) -> None:
    """The buttons' one listener, its services bound by keyword (Bolt injects the rest by name)."""
    app.action(ACTIONS)(functools.partial(on_click, application=application, directory=directory))


def on_click(ack, body, action, respond, client, application: Application, directory: SlackDirectory) -> None:
    """A button: acknowledged at once, decided by `act` for the signed user, answered where the click was."""
    ack()
    user_id = body["user"]["id"]  # from Slack's signed payload; the button's value only names the repository
    click_id = f"{user_id}:{action['action_id']}:{action.get('action_ts') or body.get('trigger_id')}"
    outcome = act(application, directory, action["action_id"], action.get("value", ""), user_id, click_id)
    if outcome.modal is not None:
        try:
            opened = client.views_open(trigger_id=body.get("trigger_id"), view=outcome.modal)
        except SlackApiError as exc:
            logger.warning("views.open failed: %s", exc.response.get("error"))
            outcome = Outcome(ephemeral="The form could not be opened (it must open within 3 seconds of the "
                                        "click); please press the button again.")
        else:
            if outcome.preview_after_open:
                refresh_adjust(application, client, opened["view"])
            return
    deliver(outcome, body, respond, client, application, directory)


def deliver(outcome: Outcome, body: dict, respond, client, application: Application,
            directory: SlackDirectory) -> None:
    """An outcome's messages: direct messages first; then in App Home (no response_url) the Home tab republished
    and the note as a DM from the app; elsewhere the original replaced and the notes ephemeral."""
    user_id = body["user"]["id"]
    for recipient, message in outcome.direct:
        try:
            client.chat_postMessage(channel=recipient, **message)
        except SlackApiError as exc:
            logger.warning("direct message to %s failed: %s", recipient, exc.response.get("error"))
    if body.get("container", {}).get("type") == "view":
        if outcome.replace is not None:
            client.views_publish(user_id=user_id, view=home_view(application, directory, user_id))
        note = outcome.ephemeral_message or (outcome.ephemeral and blocks.plain_message(outcome.ephemeral))
        if note:
            client.chat_postMessage(channel=user_id, **note)  # the app's DM: Home has no response_url
        return
    if outcome.replace is not None:
        respond(replace_original=True, **outcome.replace)
    if outcome.ephemeral_message is not None:
        respond(response_type="ephemeral", replace_original=False, **outcome.ephemeral_message)
    if outcome.ephemeral:
        respond(response_type="ephemeral", replace_original=False, **blocks.plain_message(outcome.ephemeral))
