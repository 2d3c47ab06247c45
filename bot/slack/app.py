"""The Bolt app, built by a function: nothing connects or registers at import time."""
from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from ..config import Settings
from . import actions, commands, home
from .service import SlackService


def web_client(settings: Settings) -> WebClient:
    """The Web API client: SLACK_API_URL as base, retries on rate limits and dropped connections."""
    return WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3),
                                     ConnectionErrorRetryHandler(max_retry_count=3)])


def build_app(settings: Settings, service: SlackService, client: WebClient | None = None) -> App:
    """Socket Mode needs no signing secret (the app token authenticates the socket); HTTP mode does."""
    app = App(token=settings.slack_bot_token, signing_secret=settings.slack_signing_secret or "",
              client=client or web_client(settings), process_before_response=False,
              request_verification_enabled=settings.slack_app_token is None)
    commands.register(app, service)
    actions.register(app, service)
    home.register(app, service)
    return app
