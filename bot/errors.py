"""Every error the bot raises on purpose, and what a person reads about it: one short line, never a page.

The tree: ``BotError`` and its families (configuration and usage, the estate, billing, the registry settings,
policy operations, and ``AwsError``: what AWS answered, translated once by the AWS adapters, bot/aws/errors.py, so
nothing above them knows botocore). ``describe(error)`` is the one line a surface shows (the CLI after
``ecr-cost-bot:``, a Slack message, a job's outcome).

Endpoints misconfigured as a web server answer with whole HTML pages; proxies add long bodies. ``brief``
cuts any such text to its first meaningful line (an HTML page to its title or first heading), and
``slack_failure`` turns a Slack Web API failure into one line naming the setting to fix.

Standard library only (the pure core raises from here too).
"""
from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core.models import RepositoryRef

MAX_REASON = 200
AWS_REASON = 300  # AWS's code and message, or an unexpected error's class and text
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


def describe(error: BaseException) -> str:
    """The one line a person reads about ``error``: a BotError's own line; anything else its class and the first
    line of its text."""
    if isinstance(error, BotError):
        return error.describe()
    return brief(f"{error.__class__.__name__}: {error}", limit=AWS_REASON)


class BotError(Exception):
    """An error the bot raises on purpose: its message is meant for a person, and says what to do."""

    def describe(self) -> str:
        return str(self)


# -- configuration and usage -------------------------------------------------------------------------------------

class ConfigError(BotError):
    """A setting (an environment variable) that is missing or wrong; exit code 2."""

    def describe(self) -> str:
        return f"configuration error: {self}"


class UserError(BotError):
    """A mistake the user can fix; printed as one line, exit code 1."""


class UsageError(UserError):
    """Arguments that do not make a command; exit code 2."""


class UnknownName(BotError):
    """A name (a repository, an account) that matches nothing, or several; ``candidates`` are what to suggest."""

    def __init__(self, message: str, candidates: Sequence[str]):
        super().__init__(message)
        self.candidates = list(candidates)

    def describe(self) -> str:
        return f"{self}; did you mean: {', '.join(self.candidates)}?" if self.candidates else str(self)


class AmbiguousOrUnknownName(UnknownName):
    """NAME matched no repository, or several."""


class UnknownAccount(UnknownName, LookupError):
    """An account ID or name the bot does not know."""

    def __init__(self, query: str, candidates: list[str]):
        super().__init__(f"no account {query!r} among those the bot knows (its own, ECR_COST_ROLE_ARNS, the "
                         f"organisation's, the latest scan's)", candidates)
        self.query = query


# -- the estate, the store, billing, registry settings -----------------------------------------------------------

class EstateUnreadable(BotError):
    """Not one account could be read: the message is one line naming the cause and the fix."""


class ScanBusy(BotError):
    """A scan has been running longer than a request may wait for it."""


class ScanAbandoned(BotError):
    """The scan was marked abandoned (its heartbeat lapsed): its rows are gone, it must not complete."""


class BlobRefused(BotError):
    """A blob that was served but is not used: too large, or not what its digest names."""


class BillingUnavailable(BotError):
    """The bill cannot be read: the message says what is missing (a permission, the extra, a column ...)."""


class RegistryError(BotError):
    """A template or CloudTrail call that failed: the message says what, and what to grant or fix."""


# -- policy operations -------------------------------------------------------------------------------------------

class PolicyOperationError(BotError):
    """A policy change that was refused or failed; nothing was changed (a backup may have been kept)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


class NotAnOwner(PolicyOperationError):
    """The person is neither named in the owner tag (as AWS has it now) nor an admin."""

    def __init__(self, ref: RepositoryRef, owners: tuple[str, ...]):
        super().__init__(f"only the owners or an admin can change {ref.name}; nothing was changed")
        self.ref, self.owners = ref, owners


class NotAnAdmin(PolicyOperationError):
    """Only an admin (ECR_COST_ADMINS) may do this."""

    def __init__(self, what: str):
        super().__init__(f"only an admin can {what}; nothing was changed")


class HasOwners(PolicyOperationError):
    """A claim on a repository whose owner tag (as AWS has it now) names owners already."""

    def __init__(self, ref: RepositoryRef, owners: tuple[str, ...]):
        super().__init__(f"{ref.name} already has owners; ask them, or an admin. Nothing was changed")
        self.ref, self.owners = ref, owners


class InUsePartial(PolicyOperationError):
    """Some runtimes could not be read: images running there cannot be seen, so they cannot be kept. Adopting
    anyway takes an explicit second confirmation."""

    def __init__(self, ref: RepositoryRef, problems: list[str]):
        super().__init__(f"the in-use check of {ref.name} is partial: images running where the bot cannot see "
                         f"could be expired; nothing was changed", problems)
        self.ref = ref


class HarmsInUse(PolicyOperationError):
    """The final safety check: the policy about to be put would expire or archive images that run. Nothing was
    put; only an explicit confirmation naming these images (CLI --force, Slack "Adopt anyway" / "Roll back
    anyway") puts it."""

    def __init__(self, ref: RepositoryRef, what: str, images: list[str]):
        super().__init__(f"{what} of {ref.name} would expire or archive {len(images)} image(s) in use; nothing was "
                         f"changed", images)
        self.ref, self.what, self.images = ref, what, images


class HandEdited(PolicyOperationError):
    """The live policy is not what the bot last put: someone edited it by hand since."""

    def __init__(self, ref: RepositoryRef, live: str | None, expected: str | None):
        super().__init__(f"the lifecycle policy of {ref.name} was changed by hand since the bot last set it; "
                         f"rolling back would overwrite that edit, so nothing was changed")
        self.ref, self.live, self.expected = ref, live, expected


# -- what AWS answered -------------------------------------------------------------------------------------------

class AwsError(BotError):
    """An AWS call that failed, as the AWS adapters translate it (bot/aws/errors.py): ``code`` is AWS's error
    code (a client-side failure: the botocore exception's name), ``message`` AWS's text, ``operation`` the API
    (DescribeImages ...), ``service`` the service (ecr ...), ``status`` the HTTP status of AWS's answer (0: not
    known; None: AWS never answered, the failure is the client's). Its text is one line, "Code: message", an
    endpoint's HTML page or long body cut to its gist."""

    def __init__(self, code: str, message: str, operation: str | None = None, service: str | None = None,
                 status: int | None = None):
        self.code, self.message, self.operation, self.service, self.status = code, message, operation, service, status
        super().__init__(brief(f"{code}: {message}", limit=AWS_REASON))

    @property
    def answered(self) -> bool:
        """Whether AWS answered (with this refusal); else the request never got an answer."""
        return self.status is not None


class AwsAccessDenied(AwsError):
    """Not allowed: an IAM policy, an SCP or a resource policy refused the call."""


class AwsNotFound(AwsError):
    """What was asked for is not there (a repository, a policy, a layer ...)."""


class AwsThrottled(AwsError):
    """Too many requests, still after the client's retries."""


class AwsCredentialsRefused(AwsError):
    """AWS refused the credentials (unknown, expired, or a wrong secret)."""


class AwsNoCredentials(AwsError):
    """No credentials were found anywhere in the chain."""


class AwsNoRegion(AwsError):
    """No region was configured for the call."""


class AwsUnreachable(AwsError):
    """The endpoint did not answer (DNS, connection refused, a timeout, TLS)."""


class AccountLeftOut(AwsError):
    """A request for an account that ECR_COST_ACCOUNTS / ECR_COST_EXCLUDE_ACCOUNTS leave out."""

    def __init__(self, account_id: str):
        super().__init__("AccountLeftOut", f"account {account_id} is left out by ECR_COST_ACCOUNTS / "
                                           f"ECR_COST_EXCLUDE_ACCOUNTS: the bot does not act there")
        self.account_id = account_id
