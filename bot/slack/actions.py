"""Buttons: Adopt base policy, Preview, Not now, Decline, Roll back."""
from __future__ import annotations

import re

from slack_bolt import App

from ..core import blocks
from .service import SlackService

ACTIONS = re.compile(f"^({'|'.join(map(re.escape, blocks.ACTION_IDS))})$")


def register(app: App, service: SlackService) -> None:
    @app.action(ACTIONS)
    def on_click(ack, body, action, respond, client):
        ack()
        user_id = body["user"]["id"]  # from Slack's signed payload; the button's value only names the repository
        click_id = f"{user_id}:{action['action_id']}:{action.get('action_ts') or body.get('trigger_id')}"
        outcome = service.act(action["action_id"], action.get("value", ""), user_id, client, click_id)
        in_home = body.get("container", {}).get("type") == "view"
        if in_home:
            if outcome.replace is not None:
                client.views_publish(user_id=user_id, view=service.home_view(user_id, client))
            note = outcome.ephemeral_message or (outcome.ephemeral and blocks.plain_message(outcome.ephemeral))
            if note:
                client.chat_postMessage(channel=user_id, **note)  # the app's DM: Home has no response_url
            return
        if outcome.replace is not None:
            respond(replace_original=True, **outcome.replace)
        if outcome.ephemeral_message is not None:
            respond(response_type="ephemeral", replace_original=False, **outcome.ephemeral_message)
        if outcome.ephemeral:
            respond(response_type="ephemeral", replace_original=False, **blocks.plain_message(outcome.ephemeral))
