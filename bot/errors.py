"""What a person reads when something outside the bot fails: one short line, never a page.

Endpoints misconfigured as a web server answer with whole HTML pages; proxies add long bodies. ``brief``
cuts any such text to its first meaningful line (an HTML page to its title or first heading), and
``slack_failure`` turns a Slack Web API failure into one line naming the setting to fix.
"""
from __future__ import annotations

import html
import re

MAX_REASON = 200
# Slack's error codes that a setting fixes, with the fix
SLACK_FIX_HINTS = {
    "not_in_channel": "invite the bot to the channel (/invite @ecr-cost), then run `ecr-cost-bot report --post`",
    "channel_not_found": "check ECR_COST_REPORT_CHANNEL (a channel ID like C012AB3CD the bot can see)",
    "is_archived": "the report channel is archived: unarchive it or set ECR_COST_REPORT_CHANNEL to another",
    "invalid_auth": "check the token: SLACK_BOT_TOKEN is not valid for this workspace",
    "not_authed": "check the token: SLACK_BOT_TOKEN is missing",
    "token_revoked": "check the token: SLACK_BOT_TOKEN was revoked; reinstall the app",
    "account_inactive": "check the token: the app's bot user is deactivated; reinstall the app",
    "missing_scope": "reinstall the app from manifest.yml so it has the scopes it needs",
}
_TAG = re.compile(r"<[^>]+>")
_TITLE = re.compile(r"<(title|h1)[^>]*>(.*?)</\1>", re.IGNORECASE | re.DOTALL)


def brief(text: object, limit: int = MAX_REASON) -> str:
    """The first meaningful line of an error text, at most ``limit`` characters; an HTML page becomes its
    title (or first heading)."""
    text = str(text)
    if "<html" in text.lower() or "<!doctype" in text.lower() or "<body" in text.lower():
        found = _TITLE.search(text)
        text = found.group(2) if found else _TAG.sub(" ", text)
        text = f"an HTML page instead of an API answer: {html.unescape(' '.join(text.split()))}"
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def slack_failure(exc: BaseException, variable: str, api_url: str) -> str:
    """One line for a Slack call that failed at start-up: Slack's own answer, or why Slack was not reached."""
    response = getattr(exc, "response", None)
    error = None
    if response is not None:
        try:
            error = response.get("error")
        except (AttributeError, TypeError):
            error = None
    if error and not re.fullmatch(r"[a-z0-9_.]+", str(error)):  # not one of Slack's codes: a page or a proxy's text
        status = getattr(response, "status_code", "?")
        return (f"SLACK_API_URL: {api_url} answered HTTP {status} ({brief(error)}); is it Slack's Web API "
                f"(https://slack.com/api/)?")
    if error:
        hint = SLACK_FIX_HINTS.get(error, "see Slack's error reference")
        if variable != "SLACK_BOT_TOKEN":
            hint = hint.replace("SLACK_BOT_TOKEN", variable)
        return f"{variable}: Slack answered {error}; {hint}"
    if response is not None and getattr(response, "status_code", 200) != 200:
        return (f"SLACK_API_URL: {api_url} answered HTTP {response.status_code} "
                f"({brief(getattr(response, 'data', '') or '')}); is it Slack's Web API?")
    return f"SLACK_API_URL: cannot reach Slack at {api_url}: {brief(exc)}"
