"""`/ecr-cost`: acknowledged at once; the answer follows through response_url."""
from __future__ import annotations

import logging
from functools import partial

from slack_bolt import App

from ..application import Application
from ..errors import AmbiguousOrUnknownName, BotError, EstateUnreadable, ScanBusy, UnknownAccount, describe
from ..render import blocks

COMMAND = "/ecr-cost"
logger = logging.getLogger(__name__)
MAX_QUERY = 1_000  # ARNs are far shorter; anything longer is not a repository


def register(app: App, application: Application) -> None:
    """The slash command's one listener, its service bound by keyword (Bolt injects the rest by name)."""
    app.command(COMMAND)(partial(ecr_cost, application=application))


def ecr_cost(ack, command, respond, application: Application) -> None:
    """`/ecr-cost [query]`: acknowledged before any work; the answer (or the error's one line) is ephemeral."""
    ack()  # within Slack's 3 seconds, before any work
    query = " ".join((command.get("text") or "").split())
    try:
        message = answer(application, query)
    except EstateUnreadable as exc:
        message = blocks.plain_message(f":x: No AWS account could be read: {blocks.escape(describe(exc))}")
    except ScanBusy as exc:
        message = blocks.plain_message(f":hourglass: {blocks.escape(describe(exc))}")
    except BotError as exc:  # AWS refused a read, ...: its one line
        logger.warning("/ecr-cost %r: %s", query[:200], describe(exc))
        message = blocks.plain_message(f":x: {blocks.escape(describe(exc))}")
    except Exception:  # noqa: BLE001 - the user still gets an answer
        logger.exception("/ecr-cost %r failed", query[:200])
        message = blocks.plain_message(":x: Something went wrong answering that; the error is in the bot's log.")
    respond(response_type="ephemeral", **message)


def answer(application: Application, query: str) -> dict:
    if query.lower() in ("help", "?", "-h", "--help"):
        return blocks.help_message()
    if len(query) > MAX_QUERY:
        return blocks.plain_message(f"That is {len(query):,} characters; a repository name, `region/name` or ARN "
                                    f"is much shorter. Try `/ecr-cost help`.")
    scan = application.latest(fresh=not query)  # the ranking is worth a fresh scan; a detail re-reads itself
    if not scan.repositories:
        note = " Some accounts or regions could not be read." if scan.partial else ""
        return blocks.plain_message(f"No repositories found.{note}")
    if not query:
        return blocks.ranking(scan.repositories, application.labels(scan), application.summary(scan),
                              scan.generated_at, scan.partial)
    if query.lower().startswith("account "):
        try:
            narrowed, name = application.account_view(scan, query[len("account "):])
        except UnknownAccount as exc:
            hint = f" Did you mean: {', '.join(f'`{blocks.escape(c)}`' for c in exc.candidates)}?" if exc.candidates \
                else ""
            shown = blocks.escape(exc.query[:200].replace("`", "'"))  # a backtick would end the code span
            return blocks.plain_message(f"No account `{shown}` among the scanned ones.{hint}")
        return blocks.ranking(narrowed.repositories, application.labels(scan), application.summary(narrowed),
                              scan.generated_at, scan.partial, account=name)
    try:
        return blocks.repository_detail(application.detail(query))
    except AmbiguousOrUnknownName as exc:
        return blocks.not_found(query, exc.candidates)
