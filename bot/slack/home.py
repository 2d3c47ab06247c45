"""App Home: the viewer's own repositories, with the same buttons, and the estate's totals."""
from __future__ import annotations

from slack_bolt import App

from .service import SlackService

EVENTS = ("app_home_opened",)


def register(app: App, service: SlackService) -> None:
    @app.event(EVENTS[0])
    def on_home_opened(event, client):
        if event.get("tab", "home") != "home":
            return
        client.views_publish(user_id=event["user"], view=service.home_view(event["user"], client))
