"""`ecr-cost-bot scan` and `repo` against moto's server over HTTP, through AWS_ENDPOINT_URL."""
from __future__ import annotations

import json

import boto3
import pytest
from moto.ecr.models import Image as MotoImage
from moto.ecr.models import ecr_backends

from bot.sample import MB, SampleRepository, blob, correct_moto, image, index
from tests.helpers.aws import ACCOUNT, BASE, NOW, ecr, load, run_cli


def crafted_estate() -> list[SampleRepository]:
    app1, app2 = blob("web-app-1", 3 * MB), blob("web-app-2", 4 * MB)
    web = SampleRepository("us-east-1", "web", [
        image(BASE + [app1], blob("web-cfg-1", 1_000), ("v1.0.0",), pushed_days_ago=10, pulled_days_ago=1),
        image(BASE + [app2], blob("web-cfg-2", 1_100), ("v1.0.1", "latest"), pushed_days_ago=5),
        image(BASE + [app1], blob("web-cfg-3", 1_200), (), pushed_days_ago=20),  # untagged, shares app1
    ], tags={"owner": "U123ABC alice@example.com", "team": "web"})
    amd, arm = blob("api-amd64", 8 * MB), blob("api-arm64", 9 * MB)
    children = [image(BASE + [amd], blob("api-cfg-amd", 900), pushed_days_ago=2),
                image(BASE + [arm], blob("api-cfg-arm", 950), pushed_days_ago=2)]
    api = SampleRepository("us-east-1", "api", [index(children, ("v2.0.0",), pushed_days_ago=2)],
                           tags={"owner": "U999XYZ"},
                           policy=json.dumps({"rules": [{"rulePriority": 1, "selection": {
                               "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
                               "action": {"type": "expire"}}]}))
    old = SampleRepository("us-east-1", "old-tool", [
        image([blob("alpine", 3 * MB), blob("tool", 1 * MB)], blob("old-cfg", 500), ("v0.1",), pushed_days_ago=200)],
        tags={"owner": "team-tools"})
    return [web, api, old]


def scan_json(capsys) -> dict:
    code, out, err = run_cli(capsys, "scan", "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_scan_json_is_the_contract_with_layer_exact_sizes(aws, capsys):
    load(crafted_estate())
    report = scan_json(capsys)

    assert set(report) >= {"generated_at", "price_per_gb_month", "partial", "errors", "summary", "repositories"}
    assert report["partial"] is False and report["errors"] == []
    assert report["price_per_gb_month"] == 0.1
    names = [r["repository"] for r in report["repositories"]]
    assert names == ["api", "web", "old-tool"]  # stored bytes descending
    by_name = {r["repository"]: r for r in report["repositories"]}

    web = by_name["web"]
    assert set(web) == {"repository", "account_id", "region", "arn", "image_count", "stored_bytes", "listed_bytes",
                        "monthly_cost_usd", "last_pushed_at", "last_pulled_at", "unused", "has_lifecycle_policy",
                        "owners", "tags", "account_name"}
    assert web["account_name"] is None  # not in an organisation
    # base layers and app1 once; three config blobs
    assert web["stored_bytes"] == 30 * MB + 12 * MB + 3 * MB + 4 * MB + 1_000 + 1_100 + 1_200
    # what the playbook's script sums: every image in full
    assert web["listed_bytes"] == 3 * (42 * MB) + 3 * MB + 4 * MB + 3 * MB + 3_300
    assert web["monthly_cost_usd"] == pytest.approx(web["stored_bytes"] / 2**30 * 0.1, abs=1e-4)
    assert web["image_count"] == 3
    assert web["owners"] == ["U123ABC", "alice@example.com"]
    assert web["tags"] == {"owner": "U123ABC alice@example.com", "team": "web"}
    assert web["has_lifecycle_policy"] is False and web["unused"] is False
    assert web["account_id"] == ACCOUNT and web["region"] == "us-east-1"
    assert web["arn"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/web"
    assert web["last_pulled_at"] is not None and web["last_pushed_at"].endswith("Z")

    api = by_name["api"]
    # the index and its two children are three images; the children's shared base is stored once
    assert api["image_count"] == 3
    assert api["stored_bytes"] == 42 * MB + 8 * MB + 9 * MB + 900 + 950
    assert api["has_lifecycle_policy"] is True
    assert api["last_pulled_at"] is None

    old = by_name["old-tool"]
    assert old["unused"] is True and old["owners"] == []

    summary = report["summary"]
    assert summary["repository_count"] == 3
    assert summary["stored_bytes"] == sum(r["stored_bytes"] for r in report["repositories"])
    assert summary["median_monthly_cost_usd"] == web["monthly_cost_usd"]
    assert summary["above_median"] == ["api"]
    assert any("team-tools" in w["message"] and w["repository"] == "old-tool" for w in report["warnings"])


def test_csv_uses_the_playbook_header(aws, capsys):
    load(crafted_estate())
    code, out, _ = run_cli(capsys, "scan", "--format", "csv")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "Repositories,Size,Expected Cost"
    assert lines[1:3] == ["api,59,0.01", "web,49,0.00"]  # MB of unique blobs, rounded
    assert len(lines) == 4


def test_table_ranks_and_totals(aws, capsys):
    load(crafted_estate())
    code, out, _ = run_cli(capsys, "scan")
    assert code == 0
    assert out.index(" api ") < out.index(" web ") < out.index(" old-tool ")
    assert "3 repositories" in out and "unused" in out


def test_second_account_through_assume_role(aws, capsys, monkeypatch):
    other = "210987654321"
    role = f"arn:aws:iam::{other}:role/ecr-cost-reader"
    credentials = boto3.client("sts").assume_role(RoleArn=role, RoleSessionName="setup")["Credentials"]
    assumed = boto3.Session(aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"], region_name="us-east-1")
    load(crafted_estate()[:1])
    load([SampleRepository("us-east-1", "billing", [image(BASE, blob("billing-cfg", 700), ("v1",))],
                           tags={"owner": "U555BILL"})], account=other, session=assumed)
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", role)

    report = scan_json(capsys)
    accounts = {(r["repository"], r["account_id"]) for r in report["repositories"]}
    assert accounts == {("web", ACCOUNT), ("billing", other)}
    assert report["partial"] is False
    assert aws.calls["AssumeRole"] >= 1


def test_an_account_we_cannot_enter_is_reported_not_fatal(aws, capsys, monkeypatch):
    load(crafted_estate()[:1])
    monkeypatch.setenv("ECR_COST_ROLE_ARNS", "arn:aws:iam::210987654321:role/missing")
    aws.deny_regions.add("us-east-1")  # AssumeRole is signed for us-east-1 too: denied
    code, out, err = run_cli(capsys, "scan", "--format", "json")
    assert code == 1 and out == ""  # nothing at all could be read: no empty result
    [line] = err.strip().splitlines()
    assert "no region could be read" in line and "us-east-1" in line and "AccessDenied" in line
    aws.deny_regions.clear()  # the current account readable again, the role still refused: a partial result
    aws.fail["AssumeRole"] = ("AccessDenied", "User is not authorized to perform: sts:AssumeRole")
    code, out, err = run_cli(capsys, "scan", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["partial"] is True and report["repositories"]
    assert {e["account_id"] for e in report["errors"]} == {"210987654321"}


def test_access_denied_region_gives_a_partial_result_naming_it(aws, capsys, monkeypatch):
    estate = crafted_estate()
    estate.append(SampleRepository("eu-west-1", "eu-web", [image(BASE, blob("eu-cfg", 500), ("v1",))]))
    load(estate)
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    aws.deny_regions.add("eu-west-1")

    report = scan_json(capsys)
    assert report["partial"] is True
    assert [(e["account_id"], e["region"]) for e in report["errors"]] == [(ACCOUNT, "eu-west-1")]
    assert "AccessDenied" in report["errors"][0]["message"]
    assert {r["repository"] for r in report["repositories"]} == {"web", "api", "old-tool"}

    code, out, err = run_cli(capsys, "scan")
    assert code == 0 and "PARTIAL RESULT" in out and "eu-west-1" in out


def _bulk(region: str, name: str, images) -> None:
    """Loads images straight into moto's backend: pushing 2,500 over HTTP would only test moto."""
    repository = ecr_backends[ACCOUNT][region].repositories[name]
    for img in images:
        stored = MotoImage(ACCOUNT, img.tags[0] if img.tags else None, img.manifest, name, img.media_type, img.digest)
        stored.image_tags = list(img.tags)
        repository.images.append(stored)


def test_pagination_counts_everything_when_aws_pages(aws, capsys, monkeypatch):
    big = SampleRepository("us-east-1", "big", [
        image(BASE + [blob(f"big-app-{i}", 1_000 + i)], blob(f"big-cfg-{i}", 100), (f"b{i}",) if i % 2 else (),
              pushed_days_ago=i / 100)
        for i in range(2_500)])
    ecr().create_repository(repositoryName="big")
    _bulk("us-east-1", "big", big.images)
    many = [SampleRepository("eu-west-1", f"svc-{i:03d}", [image(BASE, blob(f"svc-cfg-{i}", 10), ("v1",))])
            for i in range(250)]
    eu = ecr("eu-west-1")
    for repo in many:
        eu.create_repository(repositoryName=repo.name)
        _bulk("eu-west-1", repo.name, repo.images)
    correct_moto(ACCOUNT, [big, *many], NOW)
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    aws.max_page["DescribeRepositories"] = 100  # AWS may cut pages short; every nextToken must be followed

    report = scan_json(capsys)
    assert report["summary"]["repository_count"] == 251
    by_name = {r["repository"]: r for r in report["repositories"]}
    assert by_name["big"]["image_count"] == 2_500
    assert by_name["big"]["stored_bytes"] == 42 * MB + sum(1_000 + i + 100 for i in range(2_500))
    assert all(by_name[f"svc-{i:03d}"]["image_count"] == 1 for i in range(250))
    assert aws.calls["DescribeImages"] == 3 + 250  # 1,000 a page
    assert aws.calls["DescribeRepositories"] == 1 + 3
    assert aws.calls["BatchGetImage"] == 25 + 250  # 100 manifests a call


def test_second_scan_fetches_no_manifest_it_already_has(aws, capsys):
    estate = crafted_estate()
    load(estate)
    first = scan_json(capsys)
    assert aws.calls["BatchGetImage"] >= 3
    aws.calls.clear()

    second = scan_json(capsys)
    assert aws.calls["BatchGetImage"] == 0
    describe_pages = aws.calls["DescribeRepositories"] + aws.calls["DescribeImages"]
    repositories = len(estate)
    # describe pages + lifecycle policy + tags per repository; plus the one identity check
    assert sum(aws.calls.values()) == describe_pages + 2 * repositories + 1
    assert [r["stored_bytes"] for r in second["repositories"]] == [r["stored_bytes"] for r in first["repositories"]]


def test_throttling_is_retried_not_reported(aws, capsys):
    load(crafted_estate())
    aws.throttle_next = 3
    report = scan_json(capsys)
    assert report["partial"] is False and report["summary"]["repository_count"] == 3
    assert aws.throttle_next == 0


def test_a_manifest_that_is_not_json_is_priced_by_its_listed_size(aws, capsys):
    estate = crafted_estate()
    load(estate)
    broken = estate[0].images[2]
    for stored in ecr_backends[ACCOUNT]["us-east-1"].repositories["web"].images:
        if stored.image_digest == broken.digest:
            stored.image_manifest = "<html>not a manifest"
    report = scan_json(capsys)
    web = next(r for r in report["repositories"] if r["repository"] == "web")
    # app1 is now only known through the broken image's listed size
    assert web["stored_bytes"] == 42 * MB + 3 * MB + 4 * MB + 1_000 + 1_100 + broken.listed_bytes
    warning = next(w for w in report["warnings"] if broken.digest in w["message"])
    assert "not valid JSON" in warning["message"] and warning["repository"] == "web"
    assert report["partial"] is False


def test_repo_detail_text_and_json(aws, capsys):
    load(crafted_estate())
    code, out, _ = run_cli(capsys, "repo", "api")
    assert code == 0
    assert "#1 of 3" in out and "U999XYZ" in out and "custom (1 rule)" in out
    code, out, _ = run_cli(capsys, "repo", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/web", "--format", "json")
    detail = json.loads(out)
    assert code == 0
    assert detail["repository"] == "web" and detail["rank"] == 2 and detail["rank_of"] == 3
    assert detail["tagged_image_count"] == 2 and detail["untagged_image_count"] == 1
    assert detail["lifecycle_status"] == "none"


@pytest.mark.parametrize("query, expected", [
    ("wbe", "did you mean: web"),
    ("wéb-ñ", "no repository named 'wéb-ñ'"),
    ("", "no repository named ''"),
    ("x" * 5000, "no repository named"),
])
def test_repo_with_an_unknown_name_exits_1_with_candidates(aws, capsys, query, expected):
    load(crafted_estate())
    code, out, err = run_cli(capsys, "repo", query)
    assert code == 1 and out == ""
    assert expected in err and "Traceback" not in err


def test_repo_with_an_ambiguous_name_lists_the_regions(aws, capsys, monkeypatch):
    load([SampleRepository(region, "payments", [image(BASE, blob(f"pay-{region}", 10), ("v1",))])
          for region in ("us-east-1", "eu-west-1")])
    monkeypatch.setenv("ECR_COST_REGIONS", "us-east-1,eu-west-1")
    code, _, err = run_cli(capsys, "repo", "payments")
    assert code == 1
    assert "eu-west-1/payments" in err and "us-east-1/payments" in err
    code, out, _ = run_cli(capsys, "repo", "eu-west-1/payments", "--format", "json")
    assert code == 0 and json.loads(out)["region"] == "eu-west-1"
