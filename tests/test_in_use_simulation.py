"""90 days of a busy repository against moto: CI pushes several images a day, services deploy by tag (tags
move), a service scales out, a Lambda function is updated, one workload is removed; every day the guard runs,
then ECR's lifecycle run (our evaluator on the policy that is really in AWS; moto runs none).

Checked every day: no image that runs is ever expired; an image no longer used is expired within a bounded
number of days; the repository's image count stays bounded."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from bot.config import load_settings
from bot.core.lifecycle import evaluate
from bot.core.models import Image
from bot.gate import Actor
from bot.sample import SampleRepository, blob, image
from bot.wiring import build
from tests.helpers.aws import ACCOUNT, BASE, load
from tests.helpers.simulation import _clients, client, describe, stop_everything_of
from tests.runtimes_harness import REGION, ecs_service, move_tag, pin_tasks_running, run_task, uri

DAYS = int(__import__("os").environ.get("SIM_DAYS", "90"))
START = datetime.now(UTC) - timedelta(days=DAYS)
OWNER = "U0SIMOWNR"


class Simulation:
    def __init__(self):
        self.day = 0
        self.builds = 0
        self.releases = 0
        self.running: dict[str, set[str]] = {"api": set(), "edge": set()}  # service -> digests its tasks run
        self.lambda_digest: str | None = None
        self.no_longer_used: dict[str, int] = {}  # digest -> the day it stopped being used

    def now(self) -> datetime:
        return START + timedelta(days=self.day, hours=12)

    def push(self, tags: tuple[str, ...]) -> str:
        from moto.ecr.models import ecr_backends

        self.builds += 1
        built = image(BASE + [blob(f"sim-{self.builds}", 2_000_000 + self.builds)], blob(f"sim-cfg-{self.builds}", 200),
                      tags)
        extra = {"imageTag": tags[0]} if tags else {}
        client().put_image(repositoryName="svc", imageManifest=built.manifest, imageManifestMediaType=built.media_type,
                         imageDigest=built.digest, **extra)
        stored = next(i for i in ecr_backends[ACCOUNT][REGION].repositories["svc"].images
                      if i.image_digest == built.digest)
        stored.image_pushed_at = int((self.now() - timedelta(hours=self.builds % 10)).timestamp())
        return built.digest

    def in_use(self, by_tag: dict[str, str]) -> set[str]:
        """The ground truth: what runs (tasks, the Lambda function) or would start next (services by tag)."""
        used = set().union(*self.running.values())
        used |= {by_tag["prod"]} if "prod" in by_tag else set()
        if self.running["edge"] and "edge" in by_tag:
            used.add(by_tag["edge"])
        if self.lambda_digest:
            used.add(self.lambda_digest)
        return used


def lifecycle_run(now: datetime) -> tuple[set[str], set[str]]:
    """What ECR's daily lifecycle run does with the policy really in AWS: the expired images are deleted.
    Returns (expired, what remains)."""
    policy = json.loads(client().get_lifecycle_policy(repositoryName="svc")["lifecyclePolicyText"])
    images = [Image(d["imageDigest"], tuple(d.get("imageTags", ())), 0, d["imagePushedAt"]) for d in describe()]
    expired = sorted(d for d, decision in evaluate(images, policy, now).items() if decision.action == "expire")
    for start in range(0, len(expired), 100):
        client().batch_delete_image(repositoryName="svc",
                                    imageIds=[{"imageDigest": d} for d in expired[start:start + 100]])
    return set(expired), {i.digest for i in images} - set(expired)


@pytest.mark.slow
def test_ninety_days_never_expire_a_running_image(aws, monkeypatch, tmp_path):
    _clients.clear()
    monkeypatch.setenv("MOTO_LAMBDA_STUB_ECR", "false")
    import os
    os.environ["MOTO_LAMBDA_STUB_ECR"] = "false"
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "sim.db"))
    # workloads run in us-east-1 only; a second region keeps runtimes read across regions. Every region enabled
    # (the default, tested in test_in_use_safety.py) was 70 runtime reads per guard and most of this test's time
    monkeypatch.setenv("ECR_COST_RUNTIME_REGIONS", "us-east-1,eu-west-1")
    sim = Simulation()
    load([SampleRepository(REGION, "svc", [image(BASE + [blob("seed", 1000)], blob("seed-cfg", 100), ("seed",))],
                           tags={"owner": OWNER})])
    pin_tasks_running()
    first_release = sim.push(("v1.0",))
    move_tag("svc", "prod", first_release)
    move_tag("svc", "edge", first_release)
    api_definition = ecs_service("prod", "api", uri("svc", "prod"))
    edge_definition = ecs_service("prod", "edge", uri("svc", "edge"))
    lam = boto3.client("lambda", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="sim-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(FunctionName="resize", Role=role, PackageType="Image",
                        Code={"ImageUri": uri("svc", digest=first_release)})
    sim.lambda_digest = first_release
    built = build(load_settings(), clock=sim.now)
    owner = Actor(OWNER, "slack", names_me=lambda entry: entry == OWNER)
    try:
        built.application.scan()
        _, row = built.application.find("svc")
        assert built.application.adopt(row, owner).decision is not None  # the base policy, through the bot
        expired_total, peak_images, release_delays = 0, 0, []
        for sim.day in range(DAYS):
            # CI: three builds a day, each tagged by branch; every third day a release that `prod` moves to
            for k in range(3):
                digest = sim.push((f"main-{sim.day}-{k}",))
            move_tag("svc", "edge", digest) if sim.day < 60 else None
            if sim.day % 3 == 0:
                sim.releases += 1
                release = sim.push((f"v1.{sim.releases}",))
                move_tag("svc", "prod", release)
            # deployments: api every 2 days (and a scale-out on day 30), edge every 4 days until it is removed
            by_tag = {t: i["imageDigest"] for i in describe() for t in i.get("imageTags", [])}
            if sim.day % 2 == 0:
                stop_everything_of(sim, "api")
                run_task("prod", api_definition, by_tag["prod"], ecs=client("ecs"))
                sim.running["api"] = {by_tag["prod"]}
            if sim.day == 30:
                # scale-out: the same digest
                run_task("prod", api_definition, next(iter(sim.running["api"])), ecs=client("ecs"))
            if sim.day < 60 and sim.day % 4 == 0:
                stop_everything_of(sim, "edge")
                run_task("prod", edge_definition, by_tag["edge"], ecs=client("ecs"))
                sim.running["edge"] = {by_tag["edge"]}
            if sim.day == 60:  # the edge workload is removed
                for digest in sim.running["edge"] - sim.running["api"]:
                    sim.no_longer_used[digest] = sim.day
                stop_everything_of(sim, "edge")
                client("ecs").delete_service(cluster="prod", service="edge", force=True)
                sim.running["edge"] = set()
            if sim.day % 10 == 5:  # the Lambda function moves to the newest release
                lam.update_function_code(FunctionName="resize", ImageUri=uri("svc", digest=by_tag["prod"]))
                sim.lambda_digest = by_tag["prod"]

            used = sim.in_use(by_tag)
            result = built.application.guard()
            assert not result.at_risk, [i.digest for i in result.at_risk]
            expired, live = lifecycle_run(sim.now())
            expired_total += len(expired)
            assert not expired & used, f"day {sim.day}: running images expired: {expired & used}"
            for digest, since in list(sim.no_longer_used.items()):
                if digest not in live:
                    release_delays.append(sim.day - since)
                    del sim.no_longer_used[digest]
            peak_images = max(peak_images, len(live))
        assert expired_total > 150  # the policy still does its job
        assert release_delays and max(release_delays) <= 2, release_delays  # released, then expired, promptly
        assert not sim.no_longer_used
        assert peak_images <= 45, peak_images  # 20 + 9 + 1 + 1 kept by the rules, plus the few pinned
    finally:
        built.close()


