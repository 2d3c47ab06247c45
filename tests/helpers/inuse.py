"""The in-use tests' estate: an api repository whose images run in ECS (by a tag that then moved) and Lambda."""
from __future__ import annotations

from bot.sample import SampleRepository, blob, image
from tests.helpers.aws import BASE, load
from tests.runtimes_harness import ecs_service, lambda_function, move_tag, pin_tasks_running, run_task, uri


def api_repository() -> SampleRepository:
    """prod-1 (the digest ECS runs, soon untagged), prod-2 (where the tag moves), two untagged leftovers,
    v1.0..v1.11 releases (v1.11 runs in Lambda), one image pulled 3 days ago."""
    def img(name, tags, days, pulled=None):
        return image(BASE + [blob(f"api-{name}", 5_000_000)], blob(f"api-cfg-{name}", 300), tags,
                     pushed_days_ago=days, pulled_days_ago=pulled)

    images = [img("prod-1", ("prod",), 40), img("prod-2", ("candidate",), 5), img("left-1", (), 30),
              img("left-2", (), 20)]
    images += [img(f"v{n}", (f"v1.{n}",), 60 - n, pulled=3 if n == 2 else None) for n in range(12)]
    return SampleRepository("us-east-1", "api", images, tags={"owner": "U0APIOWNR"})


def in_use_estate(monkeypatch) -> dict:
    """The api repository, an ECS service deployed by tag whose tag then moved (its task still runs the old
    digest), and a Lambda function on a release tag."""
    monkeypatch.setenv("MOTO_LAMBDA_STUB_ECR", "false")
    import os
    os.environ["MOTO_LAMBDA_STUB_ECR"] = "false"  # read by moto's server, in this process
    repo = api_repository()
    load([repo])
    digests = {tags[0] if (tags := i.tags) else i.digest: i.digest for i in repo.all_images()}
    pin_tasks_running()
    definition = ecs_service("prod", "api", uri("api", "prod"))
    run_task("prod", definition, digests["prod"])
    move_tag("api", "prod", digests["candidate"])  # CI pushed prod again: the task still runs the old digest
    lambda_function("thumbnails", uri("api", "v1.11"))
    return {"old": digests["prod"], "new": digests["candidate"], "lambda": digests["v1.11"],
            "pulled": digests["v1.2"], "repo": repo}
