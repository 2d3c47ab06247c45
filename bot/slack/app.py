"""The Bolt app, built by a function: nothing connects or registers at import time."""
from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse

from ..application import Application
from ..config import Settings
from ..errors import ConfigError, slack_failure
from . import actions, commands, home, views
from .directory import SlackDirectory


def web_client(settings: Settings) -> WebClient:
    """The Web API client: SLACK_API_URL as base, retries on rate limits and dropped connections."""
    return WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3),
                                     ConnectionErrorRetryHandler(max_retry_count=3)])


# the bot scopes the app needs: manifest.yml's oauth_config.scopes.bot (a test keeps the two equal)
BOT_SCOPES = ("commands", "chat:write", "files:write", "im:write", "users:read", "users:read.email",
              "channels:history")


def check_slack(settings: Settings, client: WebClient) -> str:
    """Before serving or posting: the bot token works (auth.test). A failure is one ConfigError line naming
    the variable and Slack's answer (or why Slack was not reached). Returns the bot's user ID."""
    return auth_test(settings, client).get("user_id", "")


def auth_test(settings: Settings, client: WebClient) -> SlackResponse:
    """auth.test's answer (its headers say the token's scopes), or one ConfigError line as check_slack's."""
    quiet = logging.getLogger("slack_sdk")  # its retries log tracebacks; the failure is said once, below
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return client.auth_test()
    except (SlackApiError, OSError, ValueError) as exc:  # OSError: unreachable (URLError, timeouts)
        raise ConfigError(slack_failure(exc, "SLACK_BOT_TOKEN", settings.slack_api_url)) from None
    finally:
        quiet.setLevel(level)


def _bolt_logger() -> logging.Logger:
    """Bolt's own logger, without the line saying SLACK_BOT_TOKEN (which Bolt reads by itself) is unused."""
    bolt_logger = logging.getLogger("slack_bolt.App")
    if not any(isinstance(f, _UnusedTokenFilter) for f in bolt_logger.filters):
        bolt_logger.addFilter(_UnusedTokenFilter())
    return bolt_logger


class _UnusedTokenFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "will be unused" not in record.getMessage()


def build_app(settings: Settings, application: Application, directory: SlackDirectory, client: WebClient) -> App:
    """Socket Mode needs no signing secret (the app token authenticates the socket); HTTP mode does. The token
    is the client's; Bolt also reads SLACK_BOT_TOKEN itself and warns that it is unused: that line is muted."""
    app = App(signing_secret=settings.slack_signing_secret or "", client=client, process_before_response=False,
              request_verification_enabled=settings.slack_app_token is None, logger=_bolt_logger())
    commands.register(app, application)
    actions.register(app, application, directory)
    home.register(app, application, directory)
    views.register(app, application, directory)
    return app
