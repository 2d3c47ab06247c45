"""The modals: Adjust (a tuned policy with a live preview), Decline (an exemption with its reason) and Delete
repository (an export, then the deletion).

A submission is checked within Slack's 3 seconds (errors shown on the inputs), acknowledged with a "working"
view, then acted on through the application layer; the view then says what happened. The view's
``private_metadata`` only names the repository: who may act is the signed user, checked against the owner tag
as AWS has it at the submission. A view is acted on at most once (a double submit or a retry changes nothing).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from ..adoption import compact
from ..application import Application, ref_of
from ..core.inuse import PIN_PREFIX, protected
from ..core.lifecycle import validate_policy
from ..core.models import EXEMPTION_REASONS, RepositoryCost
from ..core.sweep import parse_days
from ..core.tuning import FIELDS, Tuning, archives, describe_tuning, parse_tuning, tuned_policy
from ..deletion import Deletion
from ..errors import BotError, HasOwners, InUsePartial, NotAnAdmin, NotAnOwner, PolicyOperationError, describe
from ..format import per_month, plural, size
from ..gate import Actor, Change
from ..render import blocks
from .directory import SlackDirectory

T = TypeVar("T")

logger = logging.getLogger(__name__)
TUNING_INPUTS = re.compile(f"^{re.escape(blocks.TUNE_PREFIX)}({'|'.join(FIELDS)})$")


def state_value(view: dict, block_id: str, action_id: str) -> str | None:
    """One input's value as the submission carries it (None when absent or malformed)."""
    values = view.get("state", {}).get("values", {}) if isinstance(view.get("state"), dict) else {}
    if not isinstance(values, dict):
        return None
    element = values.get(block_id, {}).get(action_id) if isinstance(values.get(block_id), dict) else None
    if not isinstance(element, dict):
        return None
    if isinstance(element.get("selected_option"), dict):
        value = element["selected_option"].get("value")
    else:
        value = element.get("value")
    return value if isinstance(value, str) else None


def tuning_values(view: dict) -> dict[str, str | None]:
    return {name: state_value(view, name, blocks.TUNE_PREFIX + name) for name in FIELDS}


def repository_of(application: Application, view: dict) -> RepositoryCost | None:
    """The repository the view names, if the latest scan has it (the metadata is the client's: never trusted for
    anything else)."""
    arn = view.get("private_metadata")
    found = application.find_by_arn(arn) if isinstance(arn, str) and arn else None
    return found[1] if found else None


def tuning_problems(values: dict[str, str | None]):
    """(the tuning, problems per input block): the form's own checks, then the lifecycle validator's."""
    tuning, problems = parse_tuning(values)
    if tuning is None:
        return None, problems
    try:  # as it is adopted: with the bot's own rule that keeps in-use images first
        _, invalid = validate_policy(compact(protected(tuned_policy(tuning))))
    except ValueError as exc:
        invalid = [str(exc)]
    if any(PIN_PREFIX in problem for problem in invalid):
        return None, {"prefix": f"{PIN_PREFIX} is the prefix the bot keeps in-use images with; use your version tags' "
                                f"own prefix."}
    if invalid:
        return None, {"overall": "ECR would refuse this policy: " + "; ".join(invalid)[:1500]}
    return tuning, {}


def sweep_values(application: Application, view: dict, tuning: Tuning | None = None) -> dict[str, str | None]:
    """The sweep input as the form holds it, and the estate's archive economics (kept across refreshes), said of
    the tuned policy when there is one: whether what it archives saves anything."""
    return {blocks.SWEEP_DAYS: state_value(view, blocks.SWEEP_DAYS, blocks.SWEEP_DAYS),
            "archive_note": application.sweep.archive_note(application.store.latest_scan(), tuned_policy(tuning)
                                                           if tuning is not None else None)
            if application.sweep else None}


def archive_figures(application: Application, adopted) -> dict:
    """What the tuned policy's adopted form archives (count, bytes), and whether archiving saves anything here."""
    economics = application.sweep.archive_economics(application.store.latest_scan()) if application.sweep else None
    return {"archiving": (adopted.archiving_count, adopted.bytes_archived),
            "archive_saves": economics is not None and economics.saves}


def refresh_adjust(application: Application, client, view: dict) -> None:
    """Recomputes the Adjust form's preview from what the form holds now (``views.update`` with the view's hash,
    so an older refresh never overwrites a newer one)."""
    row = repository_of(application, view)
    if row is None or not isinstance(view.get("id"), str):
        return
    values = tuning_values(view)
    if all(v is None for v in values.values()):  # just opened: its initial values
        values = {k: (str(v) if v is not None else None) for k, v in application.base_tuning().as_dict().items()}
    tuning, problems = tuning_problems(values)
    values |= sweep_values(application, view, tuning)
    if tuning is None:
        text = "*Preview* fix the form first: " + "; ".join(blocks.escape(p) for p in problems.values())
    else:
        try:
            found = application.tuned_preview(row, tuning)
        except BotError as exc:
            text = f"*Preview* unavailable: {blocks.escape(describe(exc))}"
        else:
            text = blocks.tuning_preview_text(found.savings, len(found.used),
                                              found.in_use is not None and found.in_use.partial,
                                              **archive_figures(application, found.adopted or found.result))
    try:
        client.views_update(view_id=view["id"], hash=view.get("hash"),
                            view=blocks.adjust_modal(row.repository, row.arn, values, text))
    except SlackApiError as exc:  # hash_conflict: the person typed again; that change brings its own refresh
        logger.info("views.update of the Adjust form skipped: %s", exc.response.get("error"))


def outcome_text(action: Callable[[], T], row: RepositoryCost, done: Callable[[T], str]) -> str:
    """What a change did, or why it did nothing (a refusal, or a Change without a decision and its note), in one
    message."""
    try:
        result = action()
    except NotAnOwner as exc:
        return blocks.refusal(row.repository, exc.owners)
    except (NotAnAdmin, HasOwners) as exc:
        return f":x: {blocks.escape(describe(exc))}."
    except InUsePartial as exc:
        return (f":warning: *Nothing was changed.* {blocks.escape(describe(exc))}:\n"
                + "\n".join(f"• {blocks.escape(p)}" for p in exc.problems[:10]))
    except PolicyOperationError as exc:
        return f":x: {blocks.escape(describe(exc))}" + "".join(f"\n• {blocks.escape(p)}" for p in exc.problems[:10])
    except BotError as exc:  # AWS refused or failed, ...: its one line
        return f":x: {blocks.escape(describe(exc))}"
    except Exception:  # noqa: BLE001 - the person still gets an answer
        logger.exception("a modal's change to %s failed", row.arn)
        return ":x: Something went wrong; the error is in the bot's log. Nothing may have changed: check " \
               f"`/ecr-cost {blocks.escape(row.repository)}`."
    if isinstance(result, Change) and result.decision is None:
        return blocks.escape(result.note or "Nothing was changed.")
    return done(result)


def begin(application: Application, ack, view: dict, title: str) -> RepositoryCost | None:
    """The checks every submission shares once its inputs are valid: the repository, and one action per view.
    Acknowledges with a "working" view, or with why nothing will happen."""
    row = repository_of(application, view)
    if row is None:
        ack(response_action="update", view=blocks.notice_modal(title, "That repository is not in the latest "
                                                                        "scan; nothing was changed."))
        return None
    if not application.first_delivery(f"view:{view.get('id')}"):
        ack(response_action="update", view=blocks.notice_modal(title, "This form was already submitted; "
                                                                        "nothing more was changed."))
        return None
    ack(response_action="update", view=blocks.notice_modal(title, f":hourglass: Working on "
                                                                 f"*{blocks.escape(row.repository)}*…"))
    return row


def submit(application: Application, directory: SlackDirectory, ack, body, view: dict, client, title: str,
           action: Callable[[RepositoryCost, Actor], T], done: Callable[[RepositoryCost, T], str]) -> None:
    """A valid submission: acknowledged with a "working" view, acted on as the signed user, the outcome shown."""
    row = begin(application, ack, view, title)
    if row is None:
        return
    actor = directory.actor(body["user"]["id"])
    finish(client, view, title, outcome_text(lambda: action(row, actor), row, lambda result: done(row, result)))


def finish(client, view: dict, title: str, text: str) -> None:
    if not isinstance(view.get("id"), str):
        logger.warning("a modal without an id: its outcome cannot be shown (%s)", text[:200])
        return
    try:
        client.views_update(view_id=view["id"], view=blocks.notice_modal(title, text))
    except SlackApiError as exc:
        logger.warning("could not show the outcome in the modal: %s", exc.response.get("error"))


def register(app: App, application: Application, directory: SlackDirectory) -> None:
    """The modals' listeners, their services bound by keyword (Bolt injects the rest by name)."""
    app.action(TUNING_INPUTS)(partial(on_tuning_input, application=application))
    app.view(blocks.ADJUST_VIEW)(partial(on_adjust, application=application, directory=directory))
    app.view(blocks.DECLINE_VIEW)(partial(on_decline, application=application, directory=directory))
    app.view(blocks.DELETE_VIEW)(partial(on_delete, application=application, directory=directory))


def on_tuning_input(ack, body, client, application: Application) -> None:
    """A change in the Adjust form: acknowledged, then the preview recomputed from what the form holds now."""
    ack()
    if isinstance(body.get("view"), dict):
        refresh_adjust(application, client, body["view"])


def on_adjust(ack, body, view, client, application: Application, directory: SlackDirectory) -> None:
    """The Adjust form submitted: the tuned policy adopted (its archive choice restated where archiving saves
    nothing), then the sweep opt-in if asked for."""
    tuning, problems = tuning_problems(tuning_values(view))
    sweep_days = state_value(view, blocks.SWEEP_DAYS, blocks.SWEEP_DAYS)
    days, sweep_problem = parse_days(sweep_days) if sweep_days else (None, None)
    if problems or sweep_problem:
        ack(response_action="errors", errors={**problems, **({blocks.SWEEP_DAYS: sweep_problem}
                                                             if sweep_problem else {})})
        return
    def done(row: RepositoryCost, change: Change) -> str:
        assert change.decision is not None  # outcome_text answers a Change without a decision itself
        note = f"\n{blocks.escape(change.note)}" if change.note else ""
        return (f":white_check_mark: Tuned policy adopted on *{blocks.escape(row.repository)}* "
                f"({blocks.escape(describe_tuning(tuning))}), projected to save "
                f"*{per_month(change.decision.projected_monthly_savings_usd or 0)}*. The previous policy is "
                f"backed up: *Roll back* in `/ecr-cost {blocks.escape(row.repository)}` restores it.{note}"
                + archive_text() + swept_text(row))

    def archive_text() -> str:  # chosen where it saves nothing: said again, never silently dropped
        policy = tuned_policy(tuning)
        found = application.sweep.archive_note(application.store.latest_scan(), policy) \
            if application.sweep and archives(policy) else None
        return f"\n:package: {blocks.escape(found)}" if found else ""

    sweep_notes: list[str] = []

    def swept_text(row: RepositoryCost) -> str:
        return "".join(f"\n{n}" for n in sweep_notes)

    def adopt(row: RepositoryCost, actor: Actor) -> Change:
        change = application.adopt_tuned(row, actor, tuning)
        if days is not None:  # after the policy: a refused adoption opts nothing in
            assert application.sweep is not None  # set by wiring
            try:
                swept = application.sweep.enable(ref_of(row), days, actor)
            except BotError as exc:
                sweep_notes.append(f":x: The sweep was not turned on: {blocks.escape(describe(exc))}")
            else:
                sweep_notes.append(blocks.escape(swept.note or "") if swept.decision is None else
                                   f":broom: Images nobody has pulled for {days} days will be deleted, each "
                                   f"announced to the owners {application.settings.sweep_grace_hours:g} hours "
                                   f"ahead (*Stop sweeping* in that message, or `ecr-cost-bot sweep disable`).")
        if change.decision is None and sweep_notes:  # the same rules already: the opt-in is the news
            return Change(None, "\n".join([change.note or "The policy was not changed.", *sweep_notes]))
        return change

    submit(application, directory, ack, body, view, client, "Adjust the policy", adopt, done)


def on_decline(ack, body, view, client, application: Application, directory: SlackDirectory) -> None:
    """The Decline form submitted: the exemption recorded with its reason (a bad input is answered in the form)."""
    reason = state_value(view, "reason", "reason")
    note = (state_value(view, "note", "note") or "").strip()
    if reason not in EXEMPTION_REASONS:
        ack(response_action="errors", errors={"reason": "Choose compliance, data retention or other."})
        return
    if len(note) > blocks.MAX_NOTE:
        ack(response_action="errors", errors={"note": f"At most {blocks.MAX_NOTE} characters ({len(note)} now)."})
        return
    def done(row: RepositoryCost, _change: Change) -> str:
        return (f"*{blocks.escape(row.repository)}* is exempt ({EXEMPTION_REASONS[reason]}): no more nudges; the "
                f"weekly report lists it with your reason. An admin can lift the exemption.")

    submit(application, directory, ack, body, view, client, "Decline the policy",
           lambda row, actor: application.decline(row, actor, reason, note or None), done)


def on_delete(ack, body, view, client, application: Application, directory: SlackDirectory) -> None:
    """The Delete repository form submitted: the name typed checked, then the export sent and the deletion made."""
    title = "Delete repository"
    row = repository_of(application, view)
    typed = (state_value(view, "confirm_name", "confirm_name") or "").strip()
    if row is not None and typed != row.repository:
        ack(response_action="errors", errors={"confirm_name": f"That is not this repository's name: type "
                                                              f"{row.repository[:200]} exactly."})
        return
    user_id = body["user"]["id"]

    def done(row: RepositoryCost, deletion: Deletion) -> str:
        return (f":wastebasket: *{blocks.escape(row.repository)}* was deleted: "
                f"{plural(deletion.row.image_count, 'image')}, {size(deletion.row.stored_bytes)}, "
                f"*{per_month(deletion.row.monthly_cost_usd)}* saved. "
                f"Its export (every image's digest, tags, times and manifest) was sent to you as a file first, "
                f"and is kept by the bot as export #{deletion.export_id}.")

    def delete(row: RepositoryCost, actor: Actor) -> Deletion:
        return application.delete_repository(row, actor, deliver=lambda export_id, content: send_export(
            client, user_id, row, export_id, content))

    submit(application, directory, ack, body, view, client, title, delete, done)


def send_export(client, user_id: str, row: RepositoryCost, export_id: int, content: str) -> None:
    """The export as a file in the person's direct messages with the app; raises when Slack refuses it."""
    try:
        channel = client.conversations_open(users=user_id)["channel"]["id"]
        client.files_upload_v2(channel=channel, content=content,
                               filename=f"{row.repository.replace('/', '_')}-export.json",
                               title=f"Export of {row.repository} before its deletion",
                               initial_comment=f"Export #{export_id} of {row.repository} ({row.account_id} "
                                               f"{row.region}), taken just before it is deleted.")
    except SlackApiError as exc:
        raise RuntimeError(f"Slack: {exc.response.get('error')}") from None
