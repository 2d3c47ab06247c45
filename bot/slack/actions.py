"""Buttons: Adopt base policy, Preview, Not now, Decline, Roll back (and Roll back over a hand edit), Why so big?.

A button's value only names the repository; who may act is decided by the policy changes from the owner tag
as AWS has it at the click. A click is acted on at most once (Slack retries and double clicks included).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from slack_bolt import App

from ..adoption import HandEdited, InUsePartial, NotAnOwner, PolicyOperationError
from ..application import Application
from ..render import blocks
from .directory import SlackDirectory
from .home import home_view

logger = logging.getLogger(__name__)
ACTIONS = re.compile(f"^({'|'.join(map(re.escape, blocks.ACTION_IDS))})$")


@dataclass(frozen=True)
class Outcome:
    """The answer to a click: a message replacing the original, and/or an ephemeral note or message."""

    replace: dict | None = None
    ephemeral: str | None = None
    ephemeral_message: dict | None = None


def act(application: Application, directory: SlackDirectory, action_id: str, value: str, user_id: str,
        click_id: str) -> Outcome:
    arn, _, seen_edit = value.partition(" ")  # Roll back anyway also names the hand edit the person saw
    found = application.find_by_arn(arn)
    if found is None:
        return Outcome(ephemeral="That repository is no longer in the latest scan; nothing was changed.")
    scan, row = found
    if action_id == blocks.PREVIEW:  # anyone may look
        try:
            view, expiring, kept = application.expiring(row, scan)
        except PolicyOperationError as exc:
            return Outcome(ephemeral=f":x: {blocks.escape(str(exc))}")
        return Outcome(ephemeral_message=blocks.preview_message(
            view, [(d.image.digest, d.image.tags, d.image.pushed_at, d.rule_priority) for d in expiring], kept=kept))
    if action_id == blocks.WHY_BIG:  # anyone may look
        try:
            report = application.size(scan, row)
        except Exception as exc:  # noqa: BLE001 - the person who clicked gets an answer, not silence
            logger.exception("size of %s failed", row.arn)
            return Outcome(ephemeral=f":x: Could not work out why {blocks.escape(row.repository)} is big: "
                                     f"{blocks.escape(exc.__class__.__name__)}")
        return Outcome(ephemeral_message=blocks.size_message(report, application.labels(scan).get(row.arn)))
    if not application.first_delivery(click_id):
        return Outcome()  # the same click delivered again: already handled
    actor = directory.actor(user_id)
    try:
        if action_id in (blocks.ADOPT, blocks.ADOPT_DESPITE_PARTIAL):
            change = application.adopt(row, actor, despite_partial=action_id == blocks.ADOPT_DESPITE_PARTIAL)
        elif action_id in (blocks.ROLLBACK, blocks.ROLLBACK_OVER_HAND_EDIT):
            forced = action_id == blocks.ROLLBACK_OVER_HAND_EDIT
            change = application.rollback(row, actor, force=forced, over=seen_edit if forced else None)
        elif action_id in (blocks.PROTECT, blocks.PROTECT_DESPITE_PARTIAL):
            change = application.protect(row, actor, despite_partial=action_id == blocks.PROTECT_DESPITE_PARTIAL)
        elif action_id == blocks.SNOOZE:
            change = application.snooze(row, actor)
        elif action_id == blocks.DECLINE:
            change = application.decline(row, actor)
        else:
            return Outcome(ephemeral=f"Unknown action {blocks.escape(action_id)}; nothing was changed.")
    except NotAnOwner as exc:
        return Outcome(ephemeral=blocks.refusal(row.repository, exc.owners))
    except InUsePartial as exc:
        return Outcome(ephemeral_message=blocks.partial_message(row.arn, row.repository, exc.problems,
                                                                protect=action_id == blocks.PROTECT))
    except HandEdited as exc:
        return Outcome(ephemeral_message=blocks.hand_edit_message(row.arn, row.repository, exc.live, exc.expected))
    except PolicyOperationError as exc:
        problems = "".join(f"\n• {blocks.escape(p)}" for p in exc.problems)
        return Outcome(ephemeral=f":x: {blocks.escape(str(exc))}{problems}")
    view = application.view_after_change(arn)
    note = None if change.note is None else blocks.escape(change.note)
    return Outcome(replace=None if view is None else blocks.repository_detail(view), ephemeral=note)


def register(app: App, application: Application, directory: SlackDirectory) -> None:
    @app.action(ACTIONS)
    def on_click(ack, body, action, respond, client):
        ack()
        user_id = body["user"]["id"]  # from Slack's signed payload; the button's value only names the repository
        click_id = f"{user_id}:{action['action_id']}:{action.get('action_ts') or body.get('trigger_id')}"
        outcome = act(application, directory, action["action_id"], action.get("value", ""), user_id, click_id)
        in_home = body.get("container", {}).get("type") == "view"
        if in_home:
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
