"""Owners' decisions over signed HTTP: an estate with an owned, an unused and an unowned repository, and the
payloads Slack sends for modals (shared by the owner-decision, watch and sweep tests)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode

from bot.core.tuning import Tuning
from bot.render import blocks
from bot.sample import MB, SampleRepository, blob, image, index
from tests.helpers.aws import ACCOUNT, BASE, CUSTOM, ecr, repository
from tests.helpers.slack import OWNER, SECRET
from tests.slack_standin import SlackStandIn, signed_headers

SHOP = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/shop"


def decisions_estate() -> list[SampleRepository]:
    shop = repository(policy=CUSTOM)
    shop.tags["owner"] = f"{OWNER} alice@example.com"
    children = [image(BASE + [blob("attic-amd", 5 * MB)], blob("attic-cfg-amd", 700), pushed_days_ago=200),
                image(BASE + [blob("attic-arm", 6 * MB)], blob("attic-cfg-arm", 800), pushed_days_ago=200)]
    attic = SampleRepository("us-east-1", "attic", [
        image(BASE + [blob("attic-1", 2 * MB)], blob("attic-cfg-1", 500), ("v0.9",), pushed_days_ago=300),
        index(children, ("v1.0",), pushed_days_ago=200)], tags={"owner": OWNER})
    cache = SampleRepository("us-east-1", "cache", [
        image([blob("cache-1", 4 * MB)], blob("cache-cfg", 400), ("v1",), pushed_days_ago=200, pulled_days_ago=5)],
        tags={"owner": OWNER})
    orphan = SampleRepository("us-east-1", "orphan", [
        image([blob("orphan-1", 7 * MB)], blob("orphan-cfg", 300), ("v1",), pushed_days_ago=3)],
        tags={"team": "data", "owner": "the data team"})
    return [shop, attic, cache, orphan]


def interact(base: str, payload: dict) -> tuple[int, dict | None]:
    """An interactive payload, signed as Slack signs it; (HTTP status, the JSON answer if any)."""
    body = urlencode({"payload": json.dumps(payload)})
    request = urllib.request.Request(f"{base}/slack/events", data=body.encode(), headers=signed_headers(SECRET, body),
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw.strip() else None
    except urllib.error.HTTPError as error:
        return error.code, None


def opened_view(slack: SlackStandIn, callback_id: str) -> dict:
    """The modal views.open opened (Slack gives it an id and a hash)."""
    slack.wait_for(lambda calls, _: any(m == "views.open" for m, _a in calls))
    return next(v for v in slack.views.values() if v.get("callback_id") == callback_id)


def submission(view: dict, values: dict, user: str, **view_overrides) -> dict:
    """A view_submission as Slack sends it: the view as shown, with what the person entered in ``state``."""
    return {"type": "view_submission", "team": {"id": "T0EXAMPLE", "domain": "example"},
            "user": {"id": user, "username": "someone", "team_id": "T0EXAMPLE"}, "api_app_id": "A0ECRCOST",
            "token": "legacy", "trigger_id": "4.5.6", "is_enterprise_install": False, "response_urls": [],
            "view": {**view, "state": {"values": values}, "root_view_id": view["id"], "app_id": "A0ECRCOST",
                     "team_id": "T0EXAMPLE", "bot_id": "B0ECRCOST", **view_overrides}}


def tags_of(name: str) -> dict:
    arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{name}"
    return {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(resourceArn=arn)["tags"]}


def tuning_state(**changes: str | None) -> dict:
    values = {k: None if v is None else str(v) for k, v in Tuning().as_dict().items()} | changes
    return {name: {blocks.TUNE_PREFIX + name: {"type": "plain_text_input" if name == "prefix" else "number_input",
                                               "value": value}} for name, value in values.items()}


def view_text(slack: SlackStandIn, view_id: str, containing: str) -> str:
    """Waits until the view shows ``containing``; its text."""
    return slack.wait_for(lambda calls, _: containing in (text := json.dumps(slack.views.get(view_id, {})))
                          and text)
