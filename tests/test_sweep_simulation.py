"""60 days of an opted-in CI repository against moto: CI pushes twice a day, a service deploys by tag every three
days (its tasks pull the image they start), old builds are pulled now and then (a rollback, a debug session);
every day the guard runs, then the daily sweep job (with its own clock).

Checked every day: no running image and no image pulled within N days is ever deleted; an image is deleted only
once the grace period since its announcement has passed; every deleted digest is in the decision log."""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from moto.ecr.models import ecr_backends

from bot.config import load_settings
from bot.core.sweep import SWEEP_TAG
from bot.sample import SampleRepository, blob, image
from bot.wiring import build, build_sweep_job
from tests.helpers.aws import ACCOUNT, BASE, load
from tests.helpers.simulation import _clients, client, describe, stop_everything_of
from tests.runtimes_harness import REGION, ecs_service, move_tag, pin_tasks_running, run_task, uri

DAYS = int(os.environ.get("SWEEP_SIM_DAYS", "60"))
START = datetime.now(UTC) - timedelta(days=DAYS + 1)
UNPULLED_DAYS, GRACE_HOURS = 10, 48
ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/svc"


@pytest.mark.slow
def test_sixty_days_of_sweeping_never_delete_a_running_or_recently_pulled_image(aws, monkeypatch, tmp_path):
    _clients.clear()
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "sweep-sim.db"))
    monkeypatch.setenv("ECR_COST_SWEEP_GRACE_HOURS", str(GRACE_HOURS))
    # workloads run in us-east-1 only; a second region keeps runtimes read across regions. Every region enabled
    # (the default, tested in test_in_use_safety.py) was 70 runtime reads per guard and most of this test's time
    monkeypatch.setenv("ECR_COST_RUNTIME_REGIONS", "us-east-1,eu-west-1")
    day = 0
    now = lambda: START + timedelta(days=day, hours=12)  # noqa: E731
    builds = 0
    pulled: dict[str, datetime] = {}  # digest -> its last pull, as the simulation made it
    running: set[str] = set()

    def moto_image(digest: str):
        return next(i for i in ecr_backends[ACCOUNT][REGION].repositories["svc"].images if i.image_digest == digest)

    def push(tag: str) -> str:
        nonlocal builds
        builds += 1
        built = image(BASE + [blob(f"sweep-sim-{builds}", 1_000_000 + builds)], blob(f"sweep-sim-cfg-{builds}", 100),
                      (tag,))
        client().put_image(repositoryName="svc", imageManifest=built.manifest, imageManifestMediaType=built.media_type,
                           imageDigest=built.digest, imageTag=tag)
        moto_image(built.digest).image_pushed_at = int((now() - timedelta(hours=builds % 7)).timestamp())
        return built.digest

    def pull(digest: str) -> None:
        moto_image(digest).last_recorded_pull_time = now()
        pulled[digest] = now()

    load([SampleRepository(REGION, "svc", [image(BASE + [blob("sweep-seed", 1000)], blob("sweep-seed-cfg", 100),
                                                 ("seed",), pushed_days_ago=DAYS + 5)],
                           tags={"owner": "U0SIMOWNR", SWEEP_TAG: str(UNPULLED_DAYS)})])
    pin_tasks_running()
    release = push("v0")
    move_tag("svc", "prod", release)
    definition = ecs_service("prod", "api", uri("svc", "prod"))
    built = build(load_settings(), clock=now)
    job = build_sweep_job(built, None, None, clock=now)
    announced_on: dict[str, datetime] = {}
    deleted_on: dict[str, int] = {}
    try:
        for day in range(DAYS):
            digests = [push(f"main-{day}-{k}") for k in range(2)]
            if day % 3 == 0:  # a release: prod moves, the service's tasks are replaced and pull it
                move_tag("svc", "prod", digests[-1])
                stop_everything_of(None, "api")
                run_task("prod", definition, digests[-1], ecs=client("ecs"))
                running = {digests[-1]}
                pull(digests[-1])
            if day % 5 == 2 and day > 15:  # someone pulls a build from 12 days ago (a rollback test, a debug session)
                aged = [d for d in describe() if now() - d["imagePushedAt"] >= timedelta(days=12)]
                target = max(aged, key=lambda d: d["imagePushedAt"])["imageDigest"] if aged else None
                if target:
                    pull(target)
            before = {d["imageDigest"] for d in describe()}
            built.application.guard()
            outcome = job.run()
            assert "sweep" in outcome and "failed" not in outcome, outcome
            assert "already run" in job.run()  # exactly once per period
            after = {d["imageDigest"] for d in describe()}
            gone = before - after
            for digest in gone:
                deleted_on[digest] = day
                assert digest not in running, f"day {day}: a running image was deleted"
                last = pulled.get(digest)
                assert last is None or now() - last > timedelta(days=UNPULLED_DAYS), \
                    f"day {day}: an image pulled {now() - last} ago was deleted"
                assert digest in announced_on and now() - announced_on[digest] >= timedelta(hours=GRACE_HOURS), \
                    f"day {day}: deleted {now() - announced_on.get(digest, now())} after its announcement"
            for digest, at in built.sweep.ledger.announced(ARN).items():
                announced_on.setdefault(digest, at)
            for digest in list(announced_on):  # an announcement forgotten (pulled again) starts over
                if digest not in built.sweep.ledger.announced(ARN) and digest not in gone:
                    del announced_on[digest]
        recorded = {r["digest"] for d in built.store.decisions(actions=("sweep",)) for r in json.loads(d.images)
                    if r["deleted"]}
        assert recorded == set(deleted_on), "every deleted digest is in the decision log, and only those"
        assert len(deleted_on) > DAYS  # the sweep does its job: most CI builds go
        assert {d["imageDigest"] for d in describe()} >= running  # still running, still there
    finally:
        built.close()
