"""The sweep: opted-in repositories lose the images nobody pulled for N days, announced first, in-use safe, every
deletion recorded. Against moto's server over HTTP (pull times set on moto's images), runtimes as in the in-use
tests, Slack through the stand-in."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from moto.ecr.models import ecr_backends

from bot.config import load_settings
from bot.core.inuse import PIN_PREFIX
from bot.core.models import Image, Manifest
from bot.core.sweep import ARCHIVE_TIER_BYTES, SWEEP_TAG, archive_economics, capped, parse_days, plan, whole_families
from bot.render import blocks
from bot.sample import SampleRepository, blob, image, index
from bot.slack import actions
from bot.wiring import build, build_slack
from tests.helpers.aws import ACCOUNT, BASE, ecr, load, run_cli
from tests.runtimes_harness import ecs_service, pin_tasks_running, run_task, uri
from tests.slack_standin import SlackStandIn

OWNER, STRANGER = "U0CIOWNER1", "U0STRANGR1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- the pure candidate logic --------------------------------------------------------------------

def img(name: str, pushed: int, pulled: int | None = None, tags=()) -> Image:
    return Image(f"sha256:{name:0>64}", tuple(tags), 1000, T0 - timedelta(days=pushed),
                 None if pulled is None else T0 - timedelta(days=pulled))


def test_candidates_leave_out_recent_pulls_in_use_pinned_the_newest_and_kept_families():
    images = [img("a", 100), img("b", 90, pulled=5), img("c", 80, pulled=40), img("d", 70), img("e", 60,
              tags=(f"{PIN_PREFIX}-0000000000e",)), img("f", 50), img("i1", 45), img("k1", 45), img("k2", 45, pulled=1),
              img("j", 40), img("j1", 40), img("j2", 40), img("new", 31)]
    manifests = {img("i1", 0).digest: Manifest(img("i1", 0).digest, "index", children=(img("k1", 0).digest,
                                                                                        img("k2", 0).digest)),
                 img("j", 0).digest: Manifest(img("j", 0).digest, "index", children=(img("j1", 0).digest,
                                                                                      img("j2", 0).digest))}
    found = plan(images, manifests, 30, T0, in_use={img("d", 0).digest})
    name = lambda digest: digest.removeprefix("sha256:").lstrip("0")  # noqa: E731
    assert {name(d) for d in found.digests} == {"a", "c", "f", "j", "j1", "j2"}
    assert [name(d) for d in found.kept_in_use] == ["d"]
    assert [name(d) for d in found.kept_pinned] == ["e"]
    assert [name(d) for d in found.kept_newest] == ["new"]
    assert {name(d) for d in found.kept_family} == {"i1", "k1"}  # k2 was pulled yesterday: its index stays
    assert found.digests[0] == img("a", 0).digest  # oldest first
    # at most N a run, and never an index without its children
    name_all = lambda chosen: {name(i.digest) for i in chosen}  # noqa: E731
    assert name_all(capped(found.candidates, manifests, 2)) == {"a", "f"}  # oldest activity first
    assert name_all(capped(found.candidates, manifests, 5)) == {"a", "c", "f"}
    assert name_all(capped(found.candidates, manifests, 6)) == {"a", "c", "f", "j", "j1", "j2"}
    assert whole_families({img("j", 0).digest, img("j1", 0).digest}, images, manifests) == set()
    # the newest image stays even when nothing else is left; every image is kept within N days
    assert plan([img("only", 400)], {}, 30, T0, ()).candidates == []
    assert plan(images, manifests, 3650, T0, ()).candidates == []


@pytest.mark.parametrize("value", ["0", "3651", "-1", "1.5", "ten", "", None, " 30x"])
def test_the_opt_in_value_must_be_whole_days_from_1_to_3650(value):
    days, problem = parse_days(value)
    assert days is None and SWEEP_TAG in problem and "1 to 3650" in problem


def test_archive_economics_say_archiving_saves_nothing_below_150_tb():
    below = archive_economics(40 * 2**40)
    assert not below.saves and "40.00 TB" in below.text and "90 days" in below.text and "$0.03/GB" in below.text
    assert "sweep" in below.text
    assert archive_economics(ARCHIVE_TIER_BYTES + 1).saves


# -- against moto ------------------------------------------------------------------------------------

def ci_repository() -> SampleRepository:
    def build_image(name, days, pulled=None, tags=()):
        return image(BASE + [blob(f"ci-{name}", 4_000_000)], blob(f"ci-cfg-{name}", 200), tags,
                     pushed_days_ago=days, pulled_days_ago=pulled)

    children = [build_image("arm", 45), build_image("amd", 45)]
    images = [build_image("stale-1", 60, tags=("main-1",)), build_image("stale-2", 55), build_image("stale-3", 50),
              build_image("pulled", 80, pulled=3, tags=("v1",)), build_image("pulled-long-ago", 90, pulled=40),
              build_image("running", 70, tags=("prod",)), build_image("pinned", 65, tags=(f"{PIN_PREFIX}-manual",)),
              index(children, ("multi",), pushed_days_ago=45), build_image("newest", 35, tags=("main-9",))]
    return SampleRepository("us-east-1", "ci", images, tags={"owner": OWNER, SWEEP_TAG: "30"})


def other_repository() -> SampleRepository:
    return SampleRepository("us-east-1", "other", [
        image(BASE + [blob("other-1", 1_000_000)], blob("other-cfg-1", 100), ("old",), pushed_days_ago=300),
        image(BASE + [blob("other-2", 1_000_000)], blob("other-cfg-2", 100), ("older",), pushed_days_ago=400)],
        tags={"owner": OWNER})


@pytest.fixture
def estate(aws):
    ci = ci_repository()
    load([ci, other_repository()])
    digests = {name: i.digest for i in ci.all_images() for name in (i.tags or (i.digest,))}
    by_layer = {json.loads(i.manifest).get("layers", [{}])[-1].get("digest"): i.digest for i in ci.all_images()}
    named = {name: by_layer[blob(f"ci-{name}", 0)[0]] for name in
             ("stale-1", "stale-2", "stale-3", "pulled", "pulled-long-ago", "running", "pinned", "arm", "amd",
              "newest")}
    named["index"] = digests["multi"]
    pin_tasks_running()
    definition = ecs_service("prod", "ci", uri("ci", digest=named["running"]))
    run_task("prod", definition, named["running"])
    return named


def live(repository: str = "ci") -> set[str]:
    return {d["imageDigest"] for page in ecr().get_paginator("describe_images").paginate(repositoryName=repository)
            for d in page["imageDetails"]}


def sweep_json(capsys, *args) -> dict:
    code, out, err = run_cli(capsys, "sweep", *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def set_pulled(digest: str, when: datetime, repository: str = "ci") -> None:
    image = next(i for i in ecr_backends[ACCOUNT]["us-east-1"].repositories[repository].images
                 if i.image_digest == digest)
    image.last_recorded_pull_time = when


def test_announced_then_deleted_after_grace_never_in_use_and_every_deletion_recorded(estate, capsys, monkeypatch):
    expected = {estate[n] for n in ("stale-1", "stale-2", "stale-3", "pulled-long-ago", "index", "arm", "amd")}
    code, out, err = run_cli(capsys, "sweep", "--format", "json")
    assert code == 0 and "owners NOT told (no SLACK_BOT_TOKEN)" in err  # recorded and printed, nobody told
    first = json.loads(out)
    assert list(first) == ["repositories"] and len(first["repositories"]) == 1  # `other` does not opt in
    entry = first["repositories"][0]
    assert list(entry) == ["repository", "account_id", "region", "unpulled_days", "announced", "deleted",
                           "kept_in_use", "problems"]
    assert (entry["repository"], entry["account_id"], entry["unpulled_days"]) == ("ci", ACCOUNT, 30)
    assert set(entry["announced"]) == expected and entry["deleted"] == [] and entry["problems"] == []
    assert estate["running"] in entry["kept_in_use"]
    code, out, err = run_cli(capsys, "sweep")  # no Slack token: recorded and printed, owners not told
    assert code == 0 and "owners NOT told" not in out and "announced 0 images" in out
    # within the grace period nothing goes; a dry run past it says what would go, and changes nothing
    again = sweep_json(capsys)["repositories"][0]
    assert again["announced"] == [] and again["deleted"] == []
    monkeypatch.setenv("ECR_COST_SWEEP_GRACE_HOURS", "0")
    dry = sweep_json(capsys, "--dry-run")["repositories"][0]
    assert set(dry["deleted"]) == expected and live() >= expected
    # pulled meanwhile: the re-check just before deleting keeps it (and forgets its announcement)
    set_pulled(estate["stale-2"], datetime.now(UTC))
    done = sweep_json(capsys)["repositories"][0]
    assert set(done["deleted"]) == expected - {estate["stale-2"]} and done["problems"] == []
    assert live() == {estate[n] for n in ("stale-2", "pulled", "running", "pinned", "newest")}
    assert len(live("other")) == 2  # never opted in: never touched
    code, out, err = run_cli(capsys, "decisions", "--format", "json")
    sweeps = [d for d in json.loads(out) if d["action"] == "sweep"]
    assert len(sweeps) == 1 and sweeps[0]["repository"] == "ci" and sweeps[0]["projected_monthly_savings_usd"] > 0
    records = {r["digest"]: r for r in sweeps[0]["images"]}
    assert set(records) == set(done["deleted"])
    assert all(r["deleted"] and r["manifest"] and r["pushed_at"] and r["size_bytes"] for r in records.values())
    assert records[estate["stale-1"]]["tags"] == ["main-1"]
    assert json.loads(records[estate["index"]]["manifest"])["manifests"]  # the index's own manifest, exact
    assert records[estate["pulled-long-ago"]]["last_pulled_at"]
    code, out, err = run_cli(capsys, "report")  # the weekly report: per repository and in total
    assert code == 0 and "swept this week: 6 images" in out and "(ci 6 images" in out, out
    # later: stale-2 idles again, so it is announced afresh with a full grace period of its own
    monkeypatch.setenv("ECR_COST_SWEEP_GRACE_HOURS", "168")
    set_pulled(estate["stale-2"], datetime.now(UTC) - timedelta(days=31))
    assert sweep_json(capsys)["repositories"][0]["announced"] == [estate["stale-2"]]


def test_a_partial_in_use_check_sweeps_nothing_there(estate, capsys, monkeypatch, aws):
    monkeypatch.setenv("ECR_COST_SWEEP_GRACE_HOURS", "0")
    sweep_json(capsys)
    aws.fail["ListClusters"] = ("AccessDeniedException", "not authorized to perform: ecs:ListClusters")
    entry = sweep_json(capsys)["repositories"][0]
    assert entry["deleted"] == [] and entry["announced"] == []
    assert any("in-use check partial" in p and "ecs" in p for p in entry["problems"])
    assert estate["running"] in live()


def test_deletion_failures_are_reported_per_image(estate, capsys, monkeypatch, aws):
    monkeypatch.setenv("ECR_COST_SWEEP_GRACE_HOURS", "0")
    sweep_json(capsys)
    aws.fail["BatchDeleteImage"] = ("AccessDeniedException", "not authorized to perform: ecr:BatchDeleteImage")
    entry = sweep_json(capsys)["repositories"][0]
    assert entry["deleted"] == [] and entry["problems"] and all("AccessDenied" in p for p in entry["problems"])
    code, out, _ = run_cli(capsys, "decisions", "--format", "json")
    sweep = [d for d in json.loads(out) if d["action"] == "sweep"][0]
    assert sweep["images"] and not any(r["deleted"] for r in sweep["images"])  # recorded first, outcome marked


def test_opt_in_and_out_from_the_cli_recorded_and_bad_input_refused(estate, capsys):
    assert run_cli(capsys, "scan")[0] == 0
    tags = lambda: {t["Key"]: t["Value"] for t in ecr().list_tags_for_resource(  # noqa: E731
        resourceArn=f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/other")["tags"]}
    for argv, code_wanted, words in [
            (("sweep", "enable", "other"), 2, "needs --days"),
            (("sweep", "enable", "other", "--days", "0"), 1, "1 to 3650"),
            (("sweep", "enable", "other", "--days", "3651"), 1, "1 to 3650"),
            (("sweep", "enable", "nope", "--days", "3"), 1, "nope"),
            (("sweep", "--days", "3"), 2, "--days goes with"),
            (("sweep", "disable"), 2, "sweep takes"),
            (("sweep", "purge", "other"), 2, "sweep takes")]:
        code, out, err = run_cli(capsys, *argv)
        assert code == code_wanted and words in err and "Traceback" not in err, (argv, err)
    assert SWEEP_TAG not in tags()
    code, out, err = run_cli(capsys, "sweep", "enable", "other", "--days", "14")
    assert code == 0 and f"{SWEEP_TAG}=14 (was unset)" in out and tags()[SWEEP_TAG] == "14"
    assert "already" in run_cli(capsys, "sweep", "enable", "other", "--days", "14")[1]
    code, out, err = run_cli(capsys, "sweep", "disable", "other")
    assert code == 0 and "removed (was 14)" in out and SWEEP_TAG not in tags()
    code, out, _ = run_cli(capsys, "decisions", "--format", "json")
    assert [d["action"] for d in json.loads(out) if d["repository"] == "other"] == ["sweep_enabled", "sweep_disabled"]


def test_owners_are_told_by_dm_and_keep_these_or_stop_sweeping_act_for_owners_only(estate, capsys, monkeypatch):
    standin = SlackStandIn()
    try:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-sweep")
        monkeypatch.setenv("SLACK_API_URL", standin.api_url)
        code, out, err = run_cli(capsys, "sweep")
        assert code == 0 and f"owners told: {OWNER}" in out
        posts = [args for method, args in standin.calls if method == "chat.postMessage"]
        assert len(posts) == 1 and posts[0]["channel"] == OWNER
        message = json.dumps(posts[0])
        assert blocks.SWEEP_KEEP in message and blocks.SWEEP_STOP in message and "7 unpulled images" in message
        batch = next(e["value"] for b in posts[0]["blocks"] if b["type"] == "actions"
                     for e in b["elements"] if e["action_id"] == blocks.SWEEP_KEEP)
        built = build(load_settings())
        try:
            _, directory, _ = build_slack(built)
            refused = actions.act(built.application, directory, blocks.SWEEP_KEEP, batch, STRANGER, "c1")
            assert refused.ephemeral and "owner" in refused.ephemeral.lower()
            kept = actions.act(built.application, directory, blocks.SWEEP_KEEP, batch, OWNER, "c2")
            assert kept.replace is not None and "kept" in json.dumps(kept.replace)
            pinned = {d["imageDigest"] for d in ecr().describe_images(repositoryName="ci")["imageDetails"]
                      if any(t.startswith(PIN_PREFIX) for t in d.get("imageTags", []))}
            assert {estate["stale-1"], estate["index"]} <= pinned
            monkeypatch.setenv("ECR_COST_SWEEP_GRACE_HOURS", "0")
            assert sweep_json(capsys)["repositories"][0]["deleted"] == []  # pinned: never swept
            stop = actions.act(built.application, directory, blocks.SWEEP_STOP, estate_arn(), OWNER, "c3")
            assert stop.replace is not None and "stopped the sweep" in json.dumps(stop.replace)
            assert SWEEP_TAG not in {t["Key"] for t in ecr().list_tags_for_resource(resourceArn=estate_arn())["tags"]}
            assert actions.act(built.application, directory, blocks.SWEEP_STOP, estate_arn(), OWNER, "c3") \
                == actions.Outcome()  # the same click again: nothing
        finally:
            built.close()
    finally:
        standin.stop()


def estate_arn() -> str:
    return f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/ci"


def test_the_daily_job_runs_once_per_period_and_is_one_registry_entry(estate, monkeypatch):
    from bot.wiring import build_sweep_job, scheduled_jobs

    built = build(load_settings())
    try:
        job = build_sweep_job(built, None, None)
        first, second = job.run(), job.run()
        assert "1 opted-in repository, 7 images announced" in first and "already run" in second
        ids = [j.id for j in scheduled_jobs(built, None, type("D", (), {"owner_ids": lambda self, o: []})())]
        assert ids.count("sweep") == 1
    finally:
        built.close()


def test_the_adjust_dialog_opts_in_with_the_tuned_policy_and_states_the_archive_economics(served, slack, settings):
    from tests.helpers.decisions import SHOP, interact, opened_view, submission, tags_of, tuning_state, view_text
    from tests.helpers.slack import OWNER as SHOP_OWNER
    from tests.helpers.slack import click

    click(served, slack, blocks.ADJUST, SHOP_OWNER, value=SHOP)
    view = opened_view(slack, blocks.ADJUST_VIEW)
    shown = view_text(slack, view["id"], "Archiving would not save money")  # the estate is far below 150 TB
    assert "Also delete images nobody has pulled for N days" in shown and "90 days" in shown
    sweep = lambda value: {blocks.SWEEP_DAYS: {blocks.SWEEP_DAYS: {"type": "number_input", "value": value}}}  # noqa
    for bad in ("0", "3651", "ten"):
        status, answer = interact(served, submission(view, tuning_state() | sweep(bad), SHOP_OWNER))
        assert answer["response_action"] == "errors" and list(answer["errors"]) == [blocks.SWEEP_DAYS], answer
    assert SWEEP_TAG not in tags_of("shop")
    status, answer = interact(served, submission(slack.views[view["id"]], tuning_state() | sweep("30"), SHOP_OWNER))
    assert status == 200 and answer["response_action"] == "update"
    done = view_text(slack, view["id"], "nobody has pulled for 30 days")
    assert "Tuned policy adopted" in done and "Stop sweeping" in done
    assert tags_of("shop")[SWEEP_TAG] == "30"


def test_at_most_max_per_run_images_go_per_repository_and_run_whole_families_only(estate, capsys, monkeypatch):
    monkeypatch.setenv("ECR_COST_SWEEP_GRACE_HOURS", "0")
    monkeypatch.setenv("ECR_COST_SWEEP_MAX_PER_RUN", "2")
    assert len(sweep_json(capsys)["repositories"][0]["announced"]) == 7
    runs = [sweep_json(capsys)["repositories"][0]["deleted"] for _ in range(4)]
    assert [len(r) for r in runs[:2]] == [2, 2]  # the longest idle first: four single images
    assert runs[2] == [] and runs[3] == []  # an index with two children (3 images) never goes in part
    assert {estate["index"], estate["arm"], estate["amd"]} <= live()
    code, out, err = run_cli(capsys, "sweep", "--dry-run")
    assert code == 0 and "dry run: nothing was announced, recorded or deleted" in out and "would delete 0" in out


def test_the_announcement_holds_slacks_limits_and_escapes_names():
    from bot.core.models import RepositoryCost
    from bot.sweep import RepositorySweep
    from tests.helpers.slack import check_limits

    row = RepositoryCost("<!channel> *ci*", ACCOUNT, "us-east-1", "arn:x", 1, 1, 1, 1, 1.0, None, None, False, False,
                         None, (OWNER,), {})
    found = RepositorySweep(row, 30, announced=[f"sha256:{n:064x}" for n in range(10_000)], batch="b" * 16,
                            announced_bytes=3 * 2**30, announced_usd=0.3, deletes_after=T0)
    message = blocks.sweep_announcement(found)
    check_limits(message)
    text = json.dumps([message["text"], *message["blocks"][:-1]])  # the confirm dialog is plain text: never a ping
    assert "<!channel>" not in text and "10,000" in text and "3.00 GB" in text and "$0.30/month" in text
    values = {blocks.SWEEP_DAYS: "30", "archive_note": "x" * 5000}
    check_limits({"text": "modal", "blocks": blocks.adjust_modal("ci", "arn:x", values,
                                                 "preview")["blocks"]})


def test_an_opt_in_of_unicode_digits_is_refused_for_that_repository_only():
    from bot.core.sweep import parse_days

    for value in ("²", "٣٠", "30.0", " ", "0", "3651"):
        days, problem = parse_days(value)
        assert days is None and "whole number of days" in problem, value
    assert parse_days(" 30 ") == (30, None)
