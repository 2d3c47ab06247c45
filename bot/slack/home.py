"""App Home: the viewer's own repositories, with the same buttons, and the estate's totals."""
from __future__ import annotations

from functools import partial

from slack_bolt import App

from ..application import Application
from ..render import blocks
from ..render.watch import templates_button
from .directory import SlackDirectory

EVENTS = ("app_home_opened",)


def home_view(application: Application, directory: SlackDirectory, user_id: str, page: int = 0) -> dict:
    names_me = directory.actor(user_id).names_me
    assert names_me is not None  # a Slack actor always knows who they are
    own, summary = application.views_owned(names_me)
    view = blocks.home_view(own, summary, directory.is_admin(user_id), page)
    if directory.is_admin(user_id):  # the admins' default policy for new repositories (repository creation templates)
        view["blocks"] = [*view["blocks"][:2], templates_button(), *view["blocks"][2:]][:blocks.MAX_HOME_BLOCKS]
    return view


def register(app: App, application: Application, directory: SlackDirectory) -> None:
    """App Home's listeners, their services bound by keyword (Bolt injects the rest by name)."""
    app.event(EVENTS[0])(partial(on_home_opened, application=application, directory=directory))
    page = partial(on_page, application=application, directory=directory)
    app.action(blocks.HOME_PREVIOUS)(page)
    app.action(blocks.HOME_NEXT)(page)


def on_home_opened(event, client, application: Application, directory: SlackDirectory) -> None:
    """The Home tab opened: the viewer's own repositories, published (an event: Bolt acknowledges it)."""
    if event.get("tab", "home") != "home":
        return
    client.views_publish(user_id=event["user"], view=home_view(application, directory, event["user"]))


def on_page(ack, body, action, client, application: Application, directory: SlackDirectory) -> None:
    """Previous / Next in App Home: the page the button names, republished."""
    ack()
    try:
        page = int(action.get("value", "0"))
    except ValueError:
        page = 0
    user_id = body["user"]["id"]
    client.views_publish(user_id=user_id, view=home_view(application, directory, user_id, page))
