"""An owner chooses ECR's archive rules in the Adjust dialog: end to end over signed HTTP against `serve`, moto's
server (its lifecycle validation widened to what AWS accepts: transition, storageClass, sinceImagePulled,
sinceImageTransitioned; ECR_FACTS.md §5) and the Slack stand-in. The preview counts what is archived apart from
what is freed and states that archiving saves nothing in this estate; adopting puts the two rules, records the
decision, pins the running image so that the policy put never archives it; the rollback restores the previous
policy byte for byte."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from bot.core.inuse import is_pin, protected
from bot.core.lifecycle import evaluate
from bot.core.models import Image
from bot.core.tuning import Tuning, tuned_policy
from bot.render import blocks
from bot.sample import SampleRepository, blob, image
from tests.helpers.aws import ACCOUNT, BASE, CUSTOM, current_policy, ecr
from tests.helpers.decisions import interact, opened_view, submission, tuning_state, view_text
from tests.helpers.slack import OWNER, click, decisions, responses_to
from tests.runtimes_harness import ecs_service, pin_tasks_running, run_task, uri

SHOP = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/shop"
ARCHIVING = Tuning(archive_days=60, archive_expire_days=120)


def build(name: str, tags: tuple[str, ...], days: float, pulled: float | None = None):
    return image(BASE + [blob(f"shop-{name}", 3_000_000)], blob(f"shop-cfg-{name}", 300), tags,
                 pushed_days_ago=days, pulled_days_ago=pulled)


ESTATE = {"stale": [build(f"stale-{n}", (f"build-{n}",), 150 + 10 * n) for n in range(4)],
          "running": build("running", ("build-run",), 180),  # nobody pulled it (ECR's view), yet ECS runs it
          "pulled": build("pulled", ("build-hot",), 200, pulled=3),
          "kept": [build("release", ("v1.0.0",), 300), build("latest", ("latest",), 1), build("new", ("build-9",), 5)]}


@pytest.fixture
def served_estate(aws):
    """`served` (tests/conftest.py) loads this: a CI repository owned by OWNER, its oldest build running in ECS."""
    pin_tasks_running()
    definition = ecs_service("prod", "web", uri("shop", digest=ESTATE["running"].digest))
    run_task("prod", definition, ESTATE["running"].digest)
    images = [*ESTATE["stale"], ESTATE["running"], ESTATE["pulled"], *ESTATE["kept"]]
    return [SampleRepository("us-east-1", "shop", images, tags={"owner": OWNER}, policy=CUSTOM)]


@pytest.fixture
def moto_takes_archive_rules(monkeypatch):
    """AWS accepts archive rules; moto 5.2.5's lifecycle validation does not (ECR_FACTS.md §5)."""
    from moto.ecr import policy_validation as moto_policy

    monkeypatch.setattr(moto_policy, "VALID_ACTION_PROPERTIES", {"type", "targetStorageClass"})
    monkeypatch.setattr(moto_policy, "VALID_ACTION_TYPE_VALUES", {"expire", "transition"})
    monkeypatch.setattr(moto_policy, "VALID_SELECTION_PROPERTIES", {*moto_policy.VALID_SELECTION_PROPERTIES,
                                                                    "storageClass"})
    monkeypatch.setattr(moto_policy, "VALID_SELECTION_COUNT_TYPE_VALUES", {
        *moto_policy.VALID_SELECTION_COUNT_TYPE_VALUES, "sinceImagePulled", "sinceImageTransitioned"})


def archive_state(days: str | None, expire_days: str | None) -> dict:
    return tuning_state(archive_days=days, archive_expire_days=expire_days)


def live_images() -> list[Image]:
    """The repository's images as moto serves them now (tags, push and pull times): what ECR would evaluate."""
    found = []
    for page in ecr().get_paginator("describe_images").paginate(repositoryName="shop"):
        for d in page["imageDetails"]:
            found.append(Image(d["imageDigest"], tuple(d.get("imageTags", ())), d.get("imageSizeInBytes", 0),
                               d["imagePushedAt"], d.get("lastRecordedPullTime")))
    return found


def test_an_owner_archives_through_adjust_the_running_image_stays_and_the_rollback_restores(
        served, slack, settings, moto_takes_archive_rules):
    click(served, slack, blocks.ADJUST, OWNER, value=SHOP)
    view = opened_view(slack, blocks.ADJUST_VIEW)
    opened = view_text(slack, view["id"], "expires 0 of 9 images")  # the preview that follows the opening
    assert "Archiving would not save money" in opened  # the estate is far below 150 TB
    assert "archive images nobody has pulled for N days" in opened and "delete archived images after M days" in opened
    assert "At least 90" in opened and "Replaces the overall count" in opened
    # the owner types N = 60: the preview counts the 4 stale builds as archived (not the running one, not the one
    # pulled lately, not latest or the release), never as a saving, and the note says archiving saves nothing here
    status, _ = interact(served, {
        "type": "block_actions", "user": {"id": OWNER}, "team": {"id": "T0EXAMPLE"}, "api_app_id": "A0ECRCOST",
        "trigger_id": "7.8.9", "container": {"type": "view", "view_id": view["id"]},
        "view": {**slack.views[view["id"]], "state": {"values": archive_state("60", None)}},
        "actions": [{"type": "number_input", "block_id": "archive_days", "action_id": "tune_archive_days",
                     "value": "60", "action_ts": f"{time.time():.6f}"}]})
    assert status == 200
    shown = view_text(slack, view["id"], "would move to the archive")
    assert "4 images" in shown and "not counted as a saving" in shown
    assert "This policy archives images (transition), which saves nothing here: you may still choose it" in shown
    assert "expires 0 of 9 images" in shown  # moving to the archive frees nothing: archived images are billed

    # M under ECR's 90-day minimum: said on its input, nothing changed
    status, answer = interact(served, submission(slack.views[view["id"]], archive_state("60", "30"), OWNER))
    assert answer["response_action"] == "errors" and list(answer["errors"]) == ["archive_expire_days"]
    assert "90" in answer["errors"]["archive_expire_days"]
    assert current_policy() == CUSTOM and decisions(settings.db_path) == []

    status, answer = interact(served, submission(slack.views[view["id"]], archive_state("60", "120"), OWNER))
    assert status == 200 and answer["response_action"] == "update"
    done = view_text(slack, view["id"], "Tuned policy adopted")
    assert "archives the others nobody pulled for 60 days, deletes images archived 120 days ago" in done
    assert "saves nothing here" in done  # the owner chose it anyway: said again, not dropped
    [decision] = decisions(settings.db_path)
    assert decision.action == "tuned" and decision.user_id == OWNER and decision.policy_before == CUSTOM
    live = json.loads(current_policy())
    assert live == json.loads(decision.policy_after) == protected(tuned_policy(ARCHIVING))
    transition = [r for r in live["rules"] if r["action"]["type"] == "transition"]
    expiry = [r for r in live["rules"] if r["selection"].get("storageClass") == "archive"]
    assert [r["selection"]["countType"] for r in transition + expiry] == ["sinceImagePulled", "sinceImageTransitioned"]

    # what ECR will do with the policy put, on the repository as it is now: the running image carries its pin and
    # is not archived; the stale builds are
    images = live_images()
    running = next(i for i in images if i.digest == ESTATE["running"].digest)
    assert any(is_pin(t) for t in running.tags)
    acts = {digest: d.action for digest, d in evaluate(images, live, datetime.now(UTC)).items()}
    assert running.digest not in acts
    assert acts == {i.digest: "transition" for i in ESTATE["stale"]}

    _, response_id = click(served, slack, blocks.ROLLBACK, OWNER, value=SHOP)
    responses_to(slack, response_id)
    assert current_policy() == CUSTOM  # the previous policy, byte for byte
    assert [d.action for d in decisions(settings.db_path)] == ["tuned", "rolled_back"]
