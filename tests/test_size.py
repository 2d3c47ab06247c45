"""`ecr-cost-bot size NAME` and "Why so big?": on an estate whose layer structure is known, every figure is computed
again here from that structure, not read back from the code under test.

The estate: `storefront` is built on a shared base (two layers), then a small code layer and, copied after the code
(the classic mistake), a dependency layer rebuilt on every push; its newest push is a multi-arch index. `worker`
holds one of storefront's dependency layers too; `batch` (another region) and `base/python` (the base image itself)
share the base. Config blobs with a real Docker history are served through the proxy, as ECR serves them through
a presigned URL (moto has no GetDownloadUrlForLayer).
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.cost import GIB
from bot.core.size import dockerfile_step, layer_steps, p90
from bot.sample import MB, SampleRepository, blob, image, index
from bot.store import Store
from tests.helpers.aws import ACCOUNT, load, run_cli
from tests.helpers.slack import STRANGER, click, responses_to, slash

PUSHES = 24
BASE = [blob("base-os", 80 * MB), blob("base-runtime", 120 * MB)]
BASE_BYTES = 200 * MB
STEPS = ["ADD file:4f1a0e in /", "RUN apt-get install -y python3", "COPY . /app",
         "RUN pip install -r requirements.txt"]
CREATED_BY = ["/bin/sh -c #(nop) ADD file:4f1a0e in / ", "/bin/sh -c apt-get install -y python3",
              "COPY . /app # buildkit", "RUN /bin/sh -c pip install -r requirements.txt # buildkit"]
STOREFRONT_ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/storefront"


def config(name: str) -> tuple[tuple[str, int], bytes]:
    """An image config blob with a Docker history (one ENV step with no layer): its (digest, size) and bytes."""
    history = [{"created_by": CREATED_BY[0]}, {"created_by": CREATED_BY[1]},
               {"created_by": "/bin/sh -c #(nop)  ENV APP=" + name, "empty_layer": True},
               {"created_by": CREATED_BY[2]}, {"created_by": CREATED_BY[3]}]
    data = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": [f"APP={name}"]},
                       "history": history}).encode()
    return ("sha256:" + hashlib.sha256(data).hexdigest(), len(data)), data


def code(i: int) -> tuple[str, int]:
    return blob(f"code-{i}", 1 * MB + i * 1_000)


def deps(i: int, arch: str = "") -> tuple[str, int]:
    return blob(f"deps-{i}{arch}", 50 * MB + i * 10_000 + {"": 0, "-amd64": 7_000, "-arm64": 8_000}[arch])


def days_ago(i: int) -> float:
    return 47.5 - 2 * i  # one push every two days, the newest 1.5 days ago


class Estate:
    def __init__(self):
        self.configs: dict[str, bytes] = {}
        self.pushes: list[list[list[tuple[str, int]]]] = []  # per push: per platform manifest, its blobs
        images = []
        for i in range(PUSHES):
            tags = (f"v1.{i}",) + (("latest",) if i == PUSHES - 1 else ())
            if i < PUSHES - 1:
                cfg, data = config(f"sf-{i}")
                self.configs[cfg[0]] = data
                images.append(image(BASE + [code(i), deps(i)], cfg, tags, pushed_days_ago=days_ago(i)))
                self.pushes.append([[cfg, *BASE, code(i), deps(i)]])
            else:  # the newest push: a multi-arch index; each platform has its own dependency layer
                children, leaves = [], []
                for arch in ("-amd64", "-arm64"):
                    cfg, data = config(f"sf-{i}{arch}")
                    self.configs[cfg[0]] = data
                    children.append(image(BASE + [code(i), deps(i, arch)], cfg, pushed_days_ago=days_ago(i),
                                          media_type="application/vnd.oci.image.manifest.v1+json"))
                    leaves.append([cfg, *BASE, code(i), deps(i, arch)])
                images.append(index(children, tags, pushed_days_ago=days_ago(i)))
                self.pushes.append(leaves)
        self.storefront = SampleRepository("us-east-1", "storefront", images, tags={"owner": "U0SHOP123"})
        self.worker = SampleRepository("us-east-1", "worker", [
            image(BASE + [deps(3), blob("worker-app", 5 * MB)], blob("worker-cfg", 900), ("w1",), pushed_days_ago=9)])
        self.batch = SampleRepository("eu-west-1", "batch", [
            image(BASE + [blob("batch-app", 7 * MB)], blob("batch-cfg", 800), ("b1",), pushed_days_ago=4)])
        self.base_image = SampleRepository("us-east-1", "base/python", [
            image(BASE, blob("base-cfg", 700), ("3.12",), pushed_days_ago=100)])

    def repos(self):
        return [self.storefront, self.worker, self.batch, self.base_image]

    # -- the expected figures, from the structure alone ------------------------------------------------------------

    def blobs_of(self, n: int) -> dict[str, int]:
        return {d: s for leaf in self.pushes[n] for d, s in leaf}

    def churn(self) -> tuple[list[int], int]:
        seen: set[str] = set()
        new_bytes, weekly = [], 0
        for n in range(PUSHES):
            new = {d: s for d, s in self.blobs_of(n).items() if d not in seen}
            seen |= set(new)
            new_bytes.append(sum(new.values()))
            if days_ago(n) <= 28:
                weekly += sum(new.values())
        return new_bytes[-20:], weekly * 7 // 28


@pytest.fixture
def estate(aws, monkeypatch):
    """The estate in moto, its config blobs served through the proxy, images above 0.25 GB flagged."""
    monkeypatch.setenv("ECR_COST_LARGE_IMAGE_GB", "0.25")
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    built = Estate()
    load(built.repos())
    aws.blobs.update(built.configs)
    return built


def size_json(capsys, name: str = "storefront") -> dict:
    code_, out, err = run_cli(capsys, "size", name, "--format", "json")
    assert code_ == 0, err
    return json.loads(out)


def scan(capsys) -> None:
    assert run_cli(capsys, "scan", "--format", "json")[0] == 0


def test_size_json_gives_the_figures_of_the_layer_structure(estate, aws, capsys):
    scan(capsys)
    doc = size_json(capsys)
    assert set(doc) >= {"repository", "account_id", "region", "stored_bytes", "largest_images", "layers", "churn",
                        "advice"}
    assert (doc["repository"], doc["account_id"], doc["region"]) == ("storefront", ACCOUNT, "us-east-1")
    everything = {d: s for n in range(PUSHES) for d, s in estate.blobs_of(n).items()}
    assert doc["stored_bytes"] == sum(everything.values())

    # largest images: the index counts both platforms; what an image holds alone is its own code, deps and config
    newest = estate.blobs_of(PUSHES - 1)
    top = doc["largest_images"][0]
    assert top["image_tags"] == ["v1.23", "latest"]
    assert top["bytes"] == sum(newest.values())
    assert top["unique_bytes"] == sum(newest.values()) - BASE_BYTES
    assert len(doc["largest_images"]) == 10
    second = doc["largest_images"][1]
    assert second["image_tags"] == ["v1.22"] and second["bytes"] == sum(estate.blobs_of(22).values())
    assert second["unique_bytes"] == second["bytes"] - BASE_BYTES

    # layers: the base first, in every image; held by the 4 repositories built on it; the Dockerfile steps
    layers = {layer["digest"]: layer for layer in doc["layers"]}
    assert [layer["digest"] for layer in doc["layers"][:2]] == [BASE[1][0], BASE[0][0]]
    assert layers[BASE[1][0]] == {"digest": BASE[1][0], "bytes": 120 * MB, "image_count": PUSHES,
                                  "repository_count": 4, "created_by": STEPS[1]}
    assert layers[BASE[0][0]]["created_by"] == STEPS[0]
    assert len(doc["layers"]) == 20
    assert doc["layers"][2]["digest"] == deps(23, "-arm64")[0]
    assert layers[deps(23, "-arm64")[0]]["created_by"] == STEPS[3]
    assert layers[deps(23, "-arm64")[0]]["image_count"] == 1 and layers[deps(23, "-arm64")[0]]["repository_count"] == 1
    assert all(d not in estate.configs for d in layers)  # config blobs are not layers
    shared = [layer for layer in doc["layers"] if layer["digest"] == deps(3)[0]]
    assert not shared or shared[0]["repository_count"] == 2  # deps-3 may fall outside the top 20

    # churn: for each of the last 20 pushes, the bytes storefront had never held before it
    new_bytes, weekly = estate.churn()
    assert doc["churn"] == {"pushes": 20, "median_new_bytes_per_push": round(statistics.median(new_bytes)),
                            "p90_new_bytes_per_push": sorted(new_bytes)[math.ceil(0.9 * 20) - 1],
                            "new_bytes_per_week": weekly}

    # advice, ranked by $/month; each names its number
    price = 0.10
    copies = sorted({deps(n)[1] for n in range(PUSHES - 1)} | {deps(23, "-amd64")[1], deps(23, "-arm64")[1]})
    rebuilt_usd = (sum(copies) - copies[-1]) / GIB * price
    base_usd = BASE_BYTES * 4 / GIB * price
    large_usd = (sum(newest.values()) - BASE_BYTES) / GIB * price
    assert [round(a["monthly_usd"], 4) for a in doc["advice"]] == \
        [round(x, 4) for x in sorted([rebuilt_usd, base_usd, large_usd], reverse=True)]
    texts = {a["text"].split(" ")[0]: a["text"] for a in doc["advice"]}
    rebuilt = next(a["text"] for a in doc["advice"] if a["text"].startswith("layer "))
    assert rebuilt.startswith("layer 4 of 4 (RUN pip install -r requirements.txt), 50 MB, new in 20 of the last 20 "
                              "pushes: it is rebuilt every time, because layer 3 below it changes with every push; "
                              "put dependency installation before copying the code")
    assert f"${rebuilt_usd:,.2f}/month" in rebuilt
    assert texts["built"].startswith("built on base/python:3.12 (200 MB, in 4 repositories)")
    assert texts["1"].startswith(f"1 image above 256 MB (largest: v1.23, {sum(newest.values()) / 2**20:,.0f} MB)")
    assert doc["base"] == {"name": "base/python:3.12", "bytes": BASE_BYTES, "layer_count": 2, "repository_count": 4}
    assert doc["notices"] == []


def test_the_config_blobs_are_read_once_ever_and_a_bad_one_never_fails_the_command(estate, aws, capsys):
    scan(capsys)
    wrong = config("sf-22")[0][0]  # of the second largest image: one whose history is read
    aws.blobs[wrong] = b'{"history": []}'  # not the bytes its digest names
    doc = size_json(capsys)
    assert any("do not match the digest" in n for n in doc["notices"])
    assert doc["layers"][0]["created_by"] == STEPS[1]
    reads = aws.calls["GetDownloadUrlForLayer"]
    assert reads == aws.calls["GetBlob"] and 0 < reads <= 12
    doc = size_json(capsys)  # immutable: cached, the refused one too
    assert aws.calls["GetDownloadUrlForLayer"] == reads and doc["notices"] == []


def test_without_permission_created_by_is_null_and_says_how_to_grant_it(estate, aws, capsys):
    scan(capsys)
    aws.fail["GetDownloadUrlForLayer"] = ("AccessDeniedException", "User: arn:aws:iam::123456789012:user/bot is not "
                                          "authorized to perform: ecr:GetDownloadUrlForLayer")
    doc = size_json(capsys)
    assert all(layer["created_by"] is None for layer in doc["layers"])
    assert aws.calls["GetDownloadUrlForLayer"] == 1  # refused once: not asked again for each blob
    [notice] = doc["notices"]
    assert "ecr:GetDownloadUrlForLayer" in notice
    rebuilt = next(a["text"] for a in doc["advice"] if a["text"].startswith("layer "))
    assert rebuilt.startswith("layer 4 of 4, 50 MB, new in 20 of the last 20 pushes")
    del aws.fail["GetDownloadUrlForLayer"]  # granted later: read then (a refusal is not cached)
    assert size_json(capsys)["layers"][0]["created_by"] == STEPS[1]


def test_a_config_blob_above_the_cap_is_not_read(estate, aws, settings):
    from bot.core.models import RepositoryRef
    from bot.errors import BlobRefused
    from bot.wiring import build

    built = build(settings)
    try:
        digest = next(iter(estate.configs))
        ref = RepositoryRef(ACCOUNT, "us-east-1", "storefront", STOREFRONT_ARN)
        assert built.collector.config_blob(ref, digest) == estate.configs[digest]
        with pytest.raises(BlobRefused, match="larger than"):
            built.collector.config_blob(ref, digest, limit=len(estate.configs[digest]) - 1)
    finally:
        built.close()


def test_size_text_unknown_names_and_a_repository_without_images(estate, aws, capsys):
    from tests.helpers.aws import ecr

    ecr().create_repository(repositoryName="empty")
    scan(capsys)
    code_, out, err = run_cli(capsys, "size", "storefront")
    assert code_ == 0, err
    assert "built on base/python:3.12 (200 MB, 2 layers, in 4 repositories)" in out
    assert "layer 4 of 4 (RUN pip install -r requirements.txt)" in out and "largest layers:" in out
    code_, out, err = run_cli(capsys, "size", "storefrnt")
    assert code_ == 1 and "did you mean: storefront" in err and "Traceback" not in err
    doc = size_json(capsys, "empty")
    assert doc["largest_images"] == [] and doc["layers"] == [] and doc["advice"] == []
    assert doc["churn"] == {"pushes": 0, "median_new_bytes_per_push": 0, "p90_new_bytes_per_push": 0,
                            "new_bytes_per_week": 0}


def test_the_weekly_report_names_the_repositories_whose_new_layers_cost_most(estate, aws, capsys):
    code_, out, err = run_cli(capsys, "report", "--format", "json")
    assert code_ == 0, err
    growth = json.loads(out)["growth"]
    _, weekly = estate.churn()
    assert growth[0] == {"repository": "storefront", "new_bytes_per_week": weekly,
                         "monthly_usd_added_per_week": round(weekly / GIB * 0.10, 4)}
    worker = sum(s for d, s in [*BASE, deps(3), blob("worker-app", 5 * MB), blob("worker-cfg", 900)]) * 7 // 28
    assert growth[1]["repository"] == "worker" and growth[1]["new_bytes_per_week"] == worker
    code_, out, err = run_cli(capsys, "report")
    assert "growing fastest (new layers per week): storefront +" in out.lower()


def test_why_so_big_over_signed_http_for_anyone(estate, served, slack):
    """The detail carries the button; a click by someone who owns nothing answers with the figures."""
    _, _, response_id = slash(served, slack, "storefront")
    [detail] = responses_to(slack, response_id)
    buttons = [b["accessory"] for b in detail["blocks"] if b.get("accessory", {}).get("action_id") == "why_so_big"]
    assert buttons == [{"type": "button", "text": {"type": "plain_text", "text": "Why so big?"},
                        "action_id": "why_so_big", "value": STOREFRONT_ARN}]
    status, response_id = click(served, slack, "why_so_big", STRANGER, value=STOREFRONT_ARN)
    assert status == 200
    [message] = responses_to(slack, response_id)
    assert message["response_type"] == "ephemeral" and message["replace_original"] is False
    text = json.dumps(message)
    newest = estate.blobs_of(PUSHES - 1)
    assert "Why is storefront so big?" in text and "Built on *base/python:3.12* (200 MB, in 4 repositories)" in text
    assert f"{sum(newest.values()) / MB:,.0f} MB" in text  # the largest image
    assert "layer 4 of 4 (RUN pip install -r requirements.txt), 50 MB, new in 20 of the last 20 pushes" in text
    assert "`RUN pip install -r requirements.txt`" in text
    assert len(message["blocks"]) <= 50 and all(len(b.get("text", {}).get("text", "")) <= 3000
                                                for b in message["blocks"])
    assert decisions_made(served) == 0  # looking changes nothing


def decisions_made(_served) -> int:
    import os

    store = Store(os.environ["ECR_COST_DB"])
    try:
        return len(store.decisions())
    finally:
        store.close()


# -- the pure parts ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("created_by, step", [
    ("/bin/sh -c #(nop) ADD file:4f1a0e in / ", "ADD file:4f1a0e in /"),
    ("/bin/sh -c #(nop)  CMD [\"python\" \"app.py\"]", 'CMD ["python" "app.py"]'),
    ("/bin/sh -c pip install -r requirements.txt", "RUN pip install -r requirements.txt"),
    ("RUN /bin/sh -c pip install -r requirements.txt # buildkit", "RUN pip install -r requirements.txt"),
    ("|2 PIP_INDEX=https://x VERSION=1 /bin/sh -c pip install  app==$VERSION", "RUN pip install app==$VERSION"),
    ("COPY . /app # buildkit", "COPY . /app"),
    ("x" * 1000, "x" * 299 + "…"),
])
def test_dockerfile_steps_read_like_the_dockerfile(created_by, step):
    assert dockerfile_step(created_by) == step


@pytest.mark.parametrize("text, steps, problem", [
    (json.dumps({"history": [{"created_by": "a"}, {"created_by": "ENV x", "empty_layer": True}, {}]}), ("a", None),
     None),
    ("{not json", None, "the config blob is not valid JSON"),
    ("[1, 2]", None, "the config blob has no history"),
    (json.dumps({"history": "no"}), None, "the config blob has no history"),
    (json.dumps({"history": [7, {"created_by": 5}]}), (None,), None),
    ("[" * 100_000, None, "the config blob is not valid JSON"),
])
def test_hostile_config_blobs_never_raise(text, steps, problem):
    assert layer_steps(text) == (steps, problem)


def test_p90_is_the_nearest_rank():
    assert p90([]) == 0 and p90([5]) == 5 and p90(list(range(1, 21))) == 18 and p90(list(range(1, 11))) == 9


def test_report_growth_in_the_pure_report():
    from bot.core.models import RepositoryCost
    from bot.core.report import fastest_growing

    rows = [RepositoryCost(n, ACCOUNT, "us-east-1", f"arn:{n}", 1, 1, 10, 10, 0.0, datetime.now(UTC), None,
                           False, False, None, (), {}) for n in ("a", "b", "c", "d", "e")]
    growth = fastest_growing(rows, {r.arn: r.repository for r in rows},
                             {"arn:a": 5, "arn:b": 50, "arn:c": 0, "arn:d": 50, "arn:e": 7}, 0.1)
    assert [(g.label, g.new_bytes_per_week) for g in growth] == [("b", 50), ("d", 50), ("e", 7)]


def test_a_failing_analysis_answers_the_click_instead_of_silence():
    from types import SimpleNamespace

    from bot.slack.actions import act

    def broken(scan, row):
        raise RuntimeError("the store went away")

    row = SimpleNamespace(arn=STOREFRONT_ARN, repository="<!channel>")
    application = SimpleNamespace(find_by_arn=lambda arn: ("scan", row), size=broken)
    outcome = act(application, None, "why_so_big", STOREFRONT_ARN, STRANGER, "click-1")
    assert outcome.ephemeral == ":x: Could not work out why &lt;!channel&gt; is big: RuntimeError"
    assert outcome.replace is None


# -- the rebuilt-layer advice on shapes a review found misread -------------------------------------------

REVIEW_NOW = datetime(2026, 1, 1, tzinfo=UTC)

def _pushes_of(layers_of_push):
    from bot.core.models import Image, Manifest
    images, manifests = [], {}
    for i, layers in enumerate(layers_of_push):
        config = blob(f"review-cfg-{i}", 500)
        digest = blob(f"review-manifest-{i}", 1)[0]
        manifests[digest] = Manifest(digest, "application/vnd.docker.distribution.manifest.v2+json",
                                     blobs=(config, *layers))
        images.append(Image(digest, (f"v{i}",), sum(s for _, s in layers), REVIEW_NOW - timedelta(days=40 - i)))
    return images, manifests


def _advice(layers_of_push) -> list[str]:
    import dataclasses

    from bot.core.models import RepositoryCost
    from bot.core.size import EstateShare, pushes, size_report
    images, manifests = _pushes_of(layers_of_push)
    found, unknown = pushes(images, manifests)
    row = RepositoryCost(**{f.name: None for f in dataclasses.fields(RepositoryCost)} | dict(
        repository="r", arn="arn", account_id="1", region="r", monthly_cost_usd=0.0, stored_bytes=0))
    report = size_report(row, found, unknown, EstateShare("arn", "r", found), {}, price_per_gb_month=0.10,
                         large_image_bytes=10**12, now=REVIEW_NOW)
    return [a.text for a in report.advice if a.kind == "rebuilt-layer"]


def test_one_big_layer_new_in_every_push_above_unchanged_code_is_advised():
    base, code = [blob("os", 30 * MB)], blob("code", 1 * MB)
    [advice] = _advice([base + [code, blob(f"deps-{i}", 800 * MB)] for i in range(20)])
    assert advice.startswith("layer 3 of 3, 800 MB, new in 20 of the last 20 pushes: it changes although the "
                             "layers below it do not")
    assert "$1.48/month" in advice  # 19 repeated copies of 800 MB at $0.10/GB-month


def test_a_large_lower_layer_that_changes_is_named_as_the_cause_not_the_code_above_it():
    base = [blob("os", 30 * MB)]
    advice = _advice([base + [blob(f"deps-{i}", 50 * MB), blob(f"assets-{i}", 300 * MB)] for i in range(20)])
    assert advice[0].startswith("layer 3 of 3, 300 MB") and "because layer 2 below it changes" in advice[0]
    assert advice[1].startswith("layer 2 of 3, 50 MB") and "changes although the layers below it do not" in advice[1]
