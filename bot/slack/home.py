"""App Home: the viewer's own repositories, with the same buttons, and the estate's totals."""
from __future__ import annotations

from slack_bolt import App

from ..application import Application
from ..render import blocks
from .directory import SlackDirectory

EVENTS = ("app_home_opened",)


def home_view(application: Application, directory: SlackDirectory, user_id: str) -> dict:
    own, summary = application.views_owned(directory.actor(user_id).names_me)
    return blocks.home_view(own, summary, directory.is_admin(user_id))


def register(app: App, application: Application, directory: SlackDirectory) -> None:
    @app.event(EVENTS[0])
    def on_home_opened(event, client):
        if event.get("tab", "home") != "home":
            return
        client.views_publish(user_id=event["user"], view=home_view(application, directory, event["user"]))
