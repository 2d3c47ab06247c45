"""The watch's Slack pieces: Set a limit… (a modal; the limit becomes the repository's ecr-cost-limit-usd tag, recorded
and undoable: Undo), and the admins' "Default policy for new repositories" button in App Home (the ROOT repository
creation template). Who may act is the signed user, checked against the owner tag as AWS has it at the change.
"""
from __future__ import annotations

import logging
import re
from functools import partial

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from ..application import Application
from ..errors import NotAnAdmin, describe
from ..format import per_month
from ..gate import Change
from ..limits import LimitService, read_amount
from ..render import blocks
from ..render import watch as render
from ..templates import TemplateService
from .directory import SlackDirectory
from .views import outcome_text, repository_of, state_value

logger = logging.getLogger(__name__)
ACTIONS = re.compile(f"^({'|'.join(map(re.escape, render.WATCH_ACTION_IDS))})$")


def limit_outcome(row, change: Change) -> str:
    assert change.decision is not None  # outcome_text answers a Change without a decision itself
    after = change.decision.tag_after
    if after is None:
        return f":white_check_mark: *{blocks.escape(row.repository)}* has no monthly limit any more."
    return (f":white_check_mark: *{blocks.escape(row.repository)}* now has a limit of *{per_month(float(after))}* "
            f"(it costs {per_month(row.monthly_cost_usd)}): tag `ecr-cost-limit-usd`, recorded; *Undo* restores "
            f"the previous one.")


def register(app: App, application: Application, limits: LimitService, templates: TemplateService,
             directory: SlackDirectory) -> None:
    """The watch's listeners, their services bound by keyword (Bolt injects the rest by name)."""
    app.action(ACTIONS)(partial(on_click, application=application, limits=limits, templates=templates,
                                directory=directory))
    app.view(render.LIMIT_VIEW)(partial(on_limit, application=application, limits=limits, directory=directory))


def tell(client, user_id: str, message: dict) -> None:
    """A direct message from the app; a failure is logged, not raised (the click was already acknowledged)."""
    try:
        client.chat_postMessage(channel=user_id, **message)
    except SlackApiError as exc:
        logger.warning("direct message to %s failed: %s", user_id, exc.response.get("error"))


def on_click(ack, body, action, respond, client, application: Application, limits: LimitService,
             templates: TemplateService, directory: SlackDirectory) -> None:
    """Set a limit… (opens the form), Undo (restores the previous limit) and the admins' default policy button."""
    ack()
    user_id = body["user"]["id"]
    action_id, value = action["action_id"], action.get("value", "")
    if action_id == render.APPLY_TEMPLATES:
        apply_templates(client, user_id, action, application, templates, directory)
        return

    def answer(text: str) -> None:  # App Home has no response_url: the app's DM then
        if body.get("response_url"):
            respond(response_type="ephemeral", replace_original=False, **blocks.plain_message(text))
        else:
            tell(client, user_id, blocks.plain_message(text))

    found = application.find_by_arn(value)
    if found is None:
        answer("That repository is no longer in the latest scan; nothing was changed.")
        return
    _, row = found
    if action_id == render.SET_LIMIT:  # the form opens for anyone; the owner check is at the submission
        try:
            client.views_open(trigger_id=body.get("trigger_id"), view=render.limit_modal(row, row.arn))
        except SlackApiError as exc:
            logger.warning("views.open failed: %s", exc.response.get("error"))
        return
    if not application.first_delivery(f"{user_id}:{action_id}:{action.get('action_ts')}"):
        return
    answer(outcome_text(lambda: limits.undo(row, directory.actor(user_id)), row, lambda change: (
        ":leftwards_arrow_with_hook: Undone: " + limit_outcome(row, change).removeprefix(":white_check_mark: "))))


def apply_templates(client, user_id: str, action: dict, application: Application, templates: TemplateService,
                    directory: SlackDirectory) -> None:
    """The admins' "Default policy for new repositories": the ROOT creation template set, told as a DM."""
    if not directory.is_admin(user_id):
        tell(client, user_id, blocks.plain_message("Only an admin can set the default policy for new "
                                                   "repositories; nothing was changed."))
        return
    if not application.first_delivery(f"{user_id}:{action['action_id']}:{action.get('action_ts')}"):
        return
    try:
        changes = templates.apply(directory.actor(user_id))
    except NotAnAdmin as exc:
        changes, note = [], describe(exc)
    else:
        note = render.template_changes_text(changes)
    tell(client, user_id, blocks.plain_message(f"*Default policy for new repositories*\n"
                                               f"```{blocks.escape(blocks.clip(note, 2800))}```"))


def on_limit(ack, body, view, client, application: Application, limits: LimitService,
             directory: SlackDirectory) -> None:
    """Set a limit… submitted: a bad amount is answered in the form; else acknowledged, set, and told as a DM."""
    limit, problem = read_amount(state_value(view, "limit", "limit"))
    if problem is not None:
        ack(response_action="errors", errors={"limit": problem})
        return
    row = repository_of(application, view)
    if row is None or not application.first_delivery(f"view:{view.get('id')}"):
        ack(response_action="update", view=blocks.notice_modal("Set a limit", "Nothing was changed: the "
                                                                "repository is not in the latest scan, or the "
                                                                "form was already submitted."))
        return
    ack()
    user_id = body["user"]["id"]
    changed = []

    def change():
        found = limits.set_limit(row, directory.actor(user_id), limit)
        changed.append(found.decision is not None)
        return found

    text = outcome_text(change, row, lambda found: limit_outcome(row, found))
    tell(client, user_id, render.limit_done(row, text, undo=bool(changed and changed[0])))
