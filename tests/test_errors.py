"""Errors at the edge: botocore's exceptions become bot/errors.py's AwsError family at the AWS adapters (real
botocore exceptions, and through moto's server over HTTP), ``describe`` gives each error's one line, and the CLI
prints that line with the right exit status."""
from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
)

from bot.aws.ecr import EcrCollector
from bot.aws.errors import translate, translated, translating
from bot.aws.sessions import default_session_factory
from bot.config import load_settings
from bot.core.models import RepositoryRef
from bot.errors import (
    AccountLeftOut,
    AmbiguousOrUnknownName,
    AwsAccessDenied,
    AwsCredentialsRefused,
    AwsError,
    AwsNoCredentials,
    AwsNoRegion,
    AwsNotFound,
    AwsThrottled,
    AwsUnreachable,
    BillingUnavailable,
    BlobRefused,
    BotError,
    ConfigError,
    EstateUnreadable,
    HandEdited,
    HarmsInUse,
    HasOwners,
    InUsePartial,
    NotAnAdmin,
    NotAnOwner,
    PolicyOperationError,
    RegistryError,
    ScanAbandoned,
    ScanBusy,
    UnknownAccount,
    UsageError,
    UserError,
    describe,
)
from bot.sample import MB, SampleRepository, blob, image
from bot.store import Store
from tests.helpers.aws import ACCOUNT, free_port, load, run_cli

REF = RepositoryRef(ACCOUNT, "us-east-1", "shop", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/shop")


def client_error(code: str, message: str = "the message", status: int = 400,
                 operation: str = "DescribeImages") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


# -- botocore's exceptions, translated ------------------------------------------------------------------------------

@pytest.mark.parametrize("code, kind", [
    ("AccessDeniedException", AwsAccessDenied),  # ECR, ECS, Lambda, Inspector
    ("AccessDenied", AwsAccessDenied),  # STS, S3, IAM (query protocols)
    ("UnauthorizedOperation", AwsAccessDenied),  # EC2
    ("AuthorizationError", AwsAccessDenied),
    ("InvalidClientTokenId", AwsCredentialsRefused),
    ("ExpiredToken", AwsCredentialsRefused),
    ("UnrecognizedClientException", AwsCredentialsRefused),
    ("SignatureDoesNotMatch", AwsCredentialsRefused),
    ("ThrottlingException", AwsThrottled),
    ("Throttling", AwsThrottled),
    ("TooManyRequestsException", AwsThrottled),
    ("RequestLimitExceeded", AwsThrottled),
    ("RepositoryNotFoundException", AwsNotFound),
    ("LifecyclePolicyNotFoundException", AwsNotFound),
    ("LayersNotFoundException", AwsNotFound),
    ("LayerInaccessibleException", AwsNotFound),
    ("EntityNotFoundException", AwsNotFound),  # Glue
    ("NoSuchEntity", AwsNotFound),  # IAM
    ("NoSuchKey", AwsNotFound),  # S3
    ("InvalidParameterException", AwsError),
    ("ServerException", AwsError),
])
def test_a_client_error_becomes_the_kind_its_code_names(code, kind):
    found = translate(client_error(code, status=403), service="ecr")
    assert type(found) is kind
    assert (found.code, found.message, found.operation, found.service, found.status) == \
        (code, "the message", "DescribeImages", "ecr", 403)
    assert found.answered and str(found) == describe(found) == f"{code}: the message"


@pytest.mark.parametrize("exc, kind", [
    (NoCredentialsError(), AwsNoCredentials),
    (NoRegionError(), AwsNoRegion),
    (EndpointConnectionError(endpoint_url="https://ecr.us-east-1.amazonaws.com/"), AwsUnreachable),
    (ConnectTimeoutError(endpoint_url="https://ecr.us-east-1.amazonaws.com/"), AwsUnreachable),
    (ReadTimeoutError(endpoint_url="https://ecr.us-east-1.amazonaws.com/"), AwsUnreachable),
    (ParamValidationError(report="Missing required parameter in input: \"repositoryName\""), AwsError),
])
def test_a_client_side_failure_becomes_an_aws_error_that_was_never_answered(exc, kind):
    found = translate(exc, service="ecr", operation="DescribeImages")
    assert type(found) is kind
    assert found.code == exc.__class__.__name__ and found.message == str(exc)
    assert (found.operation, found.service, found.status, found.answered) == ("DescribeImages", "ecr", None, False)
    assert describe(found) == f"{exc.__class__.__name__}: {exc}".splitlines()[0]


def test_what_is_not_botocore_passes_untouched():
    assert translate(ValueError("no")) is None
    with pytest.raises(KeyError), translated("ecr"):
        raise KeyError("not AWS")
    already = AwsThrottled("ThrottlingException", "Rate exceeded")
    assert translate(already) is already


def test_an_html_page_or_a_long_body_is_cut_to_one_line():
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>" + "x" * 5000
    found = translate(client_error("502", page, status=502))
    assert str(found) == "an HTML page instead of an API answer: 502 Bad Gateway"  # the page, not its code
    long = translate(client_error("InvalidParameterException", "y" * 2000 + "\nsecond line"))
    assert "\n" not in str(long) and len(str(long)) == 300 and str(long).endswith("…")


def test_the_original_exception_is_the_cause():
    original = client_error("AccessDeniedException")
    with pytest.raises(AwsAccessDenied) as raised, translated("ecr"):
        raise original
    assert raised.value.__cause__ is original


# -- through moto's server, over HTTP ---------------------------------------------------------------------------

def collector() -> EcrCollector:
    settings = load_settings()
    return EcrCollector(default_session_factory(region_name=settings.aws_region), ["us-east-1"], [],
                        Store(":memory:"))


def shop() -> SampleRepository:
    return SampleRepository("us-east-1", "shop", [image([blob("base", MB)], blob("cfg", 100), ("v1",))])


def test_access_denied_by_aws_is_aws_access_denied_for_calls_and_pages(aws):
    load([shop()])
    reader = collector()
    aws.deny_regions.add("us-east-1")
    with pytest.raises(AwsAccessDenied) as denied:
        reader.client_for(REF).list_tags_for_resource(resourceArn=REF.arn)
    assert (denied.value.code, denied.value.operation, denied.value.service, denied.value.status) == \
        ("AccessDeniedException", "ListTagsForResource", "ecr", 400)
    assert "not authorized to perform: ecr:ListTagsForResource" in describe(denied.value)
    with pytest.raises(AwsAccessDenied) as paged:
        reader.image_digests(REF)  # a paginator: the error comes while its pages are read
    assert paged.value.operation == "DescribeImages"


def test_not_found_in_aws_is_aws_not_found_and_an_absent_policy_is_none(aws):
    reader = collector()
    with pytest.raises(AwsNotFound) as missing:
        reader.get_lifecycle_policy(REF)  # no such repository: not "no policy"
    assert missing.value.code == "RepositoryNotFoundException" and missing.value.operation == "GetLifecyclePolicy"
    load([shop()])
    assert reader.get_lifecycle_policy(REF) is None  # the repository is there, without a policy
    assert reader.repository_policy(REF) is None
    reader.delete_lifecycle_policy(REF)  # none to delete: what was asked for


def test_throttling_left_after_the_retries_is_aws_throttled(aws):
    load([shop()])
    reader = collector()
    aws.throttle_next = 1
    session = default_session_factory(region_name="us-east-1")(None)
    with pytest.raises(AwsThrottled) as throttled:
        reader.client(session, "ecr", "us-east-1", retries=False).describe_repositories()
    assert throttled.value.code == "ThrottlingException" and describe(throttled.value) == \
        "ThrottlingException: Rate exceeded"


def test_an_endpoint_that_does_not_answer_is_aws_unreachable(aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    session = default_session_factory(region_name="us-east-1")(None)
    with pytest.raises(AwsUnreachable) as unreachable:
        collector().client(session, "ecr", "us-east-1", retries=False).describe_repositories()
    assert unreachable.value.code == "EndpointConnectionError" and not unreachable.value.answered


def test_an_account_left_out_is_refused_before_any_call(aws):
    reader = EcrCollector(default_session_factory(region_name="us-east-1"), ["us-east-1"], [], Store(":memory:"),
                          exclude_accounts=[ACCOUNT])
    with pytest.raises(AccountLeftOut) as left_out:
        reader.client_for(REF)
    assert describe(left_out.value) == (f"AccountLeftOut: account {ACCOUNT} is left out by ECR_COST_ACCOUNTS / "
                                        f"ECR_COST_EXCLUDE_ACCOUNTS: the bot does not act there")
    assert aws.calls.total() == 0


def test_a_wrapped_client_keeps_what_callers_use(aws):
    load([shop()])
    session = default_session_factory(region_name="us-east-1")(None)
    client = translating(session.client("ecr", region_name="us-east-1"))
    assert translating(client) is client
    assert client.meta.region_name == "us-east-1" and client.can_paginate("describe_images")
    pages = client.get_paginator("describe_repositories").paginate()
    assert [r["repositoryName"] for page in pages for r in page["repositories"]] == ["shop"]


# -- describe: the one line of each error -----------------------------------------------------------------------

@pytest.mark.parametrize("error, line", [
    (ConfigError("ECR_COST_REGIONS: 'mars-1' is not a region"),
     "configuration error: ECR_COST_REGIONS: 'mars-1' is not a region"),
    (UserError("policy apply changes the repository's lifecycle policy in AWS: add --yes to confirm"),
     "policy apply changes the repository's lifecycle policy in AWS: add --yes to confirm"),
    (UsageError("--days: expected 1 to 400, got 0"), "--days: expected 1 to 400, got 0"),
    (AmbiguousOrUnknownName("no repository named 'shpo'", ["shop", "shop-api"]),
     "no repository named 'shpo'; did you mean: shop, shop-api?"),
    (AmbiguousOrUnknownName("no repository named 'zzz'", []), "no repository named 'zzz'"),
    (UnknownAccount("prdo", ["prod"]), "no account 'prdo' among those the bot knows (its own, ECR_COST_ROLE_ARNS, "
                                       "the organisation's, the latest scan's); did you mean: prod?"),
    (EstateUnreadable("no region: set ECR_COST_REGIONS or AWS_REGION"),
     "no region: set ECR_COST_REGIONS or AWS_REGION"),
    (ScanBusy("a scan is running"), "a scan is running"),
    (ScanAbandoned("scan 3 was marked abandoned"), "scan 3 was marked abandoned"),
    (BlobRefused("config blob sha256:ab is larger than 4 MiB: not read"),
     "config blob sha256:ab is larger than 4 MiB: not read"),
    (BillingUnavailable("Cost Explorer failed: ServerException: down"), "Cost Explorer failed: ServerException: down"),
    (RegistryError("cannot read CloudTrail in 1 us-east-1: access denied; grant cloudtrail:LookupEvents"),
     "cannot read CloudTrail in 1 us-east-1: access denied; grant cloudtrail:LookupEvents"),
    (PolicyOperationError("ECR would refuse this policy", ["rule 1: no action"]), "ECR would refuse this policy"),
    (NotAnOwner(REF, ("U1",)), "only the owners or an admin can change shop; nothing was changed"),
    (NotAnAdmin("set the default policy"), "only an admin can set the default policy; nothing was changed"),
    (HasOwners(REF, ("U1",)), "shop already has owners; ask them, or an admin. Nothing was changed"),
    (InUsePartial(REF, ["ecs in 1 us-east-1: AccessDenied"]),
     "the in-use check of shop is partial: images running where the bot cannot see could be expired; nothing was "
     "changed"),
    (HarmsInUse(REF, "the base policy", ["sha256:ab"]),
     "the base policy of shop would expire or archive 1 image(s) in use; nothing was changed"),
    (HandEdited(REF, "{}", None), "the lifecycle policy of shop was changed by hand since the bot last set it; "
                                  "rolling back would overwrite that edit, so nothing was changed"),
    (AwsAccessDenied("AccessDeniedException", "not authorized"), "AccessDeniedException: not authorized"),
    (AwsNotFound("RepositoryNotFoundException", "no shop"), "RepositoryNotFoundException: no shop"),
    (AwsThrottled("ThrottlingException", "Rate exceeded"), "ThrottlingException: Rate exceeded"),
    (AwsCredentialsRefused("ExpiredToken", "expired"), "ExpiredToken: expired"),
    (AwsNoCredentials("NoCredentialsError", "Unable to locate credentials"),
     "NoCredentialsError: Unable to locate credentials"),
    (AwsNoRegion("NoRegionError", "You must specify a region."), "NoRegionError: You must specify a region."),
    (AwsUnreachable("EndpointConnectionError", "Could not connect"), "EndpointConnectionError: Could not connect"),
    (AccountLeftOut("111122223333"), "AccountLeftOut: account 111122223333 is left out by ECR_COST_ACCOUNTS / "
                                     "ECR_COST_EXCLUDE_ACCOUNTS: the bot does not act there"),
    (RuntimeError("the store went away\nat line 3"), "RuntimeError: the store went away"),
])
def test_describe_gives_each_error_one_line(error, line):
    assert describe(error) == line and "\n" not in describe(error)


def test_every_error_class_is_a_bot_error_in_one_module():
    import bot.errors

    classes = [c for c in vars(bot.errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert all(issubclass(c, BotError) and c.__module__ == "bot.errors" for c in classes)
    assert {c.__name__ for c in classes} >= {"AwsError", "PolicyOperationError", "EstateUnreadable", "ScanBusy"}


# -- the CLI: one line, the right exit status ----------------------------------------------------------------------

def test_the_cli_prints_one_line_and_exits_1_when_no_account_can_be_read(monkeypatch, capsys):
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # no credentials anywhere (the hermetic fixture)
    code, out, err = run_cli(capsys, "scan", "--quiet")
    assert code == 1 and out == ""
    assert err.splitlines() == ["ecr-cost-bot: no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, or run with an instance, task or pod role"]


def test_the_cli_names_an_unknown_repository_with_its_candidates(aws, capsys):
    load([shop()])
    assert run_cli(capsys, "scan", "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "repo", "shpo")
    assert code == 1 and err.splitlines() == ["ecr-cost-bot: no repository named 'shpo'; did you mean: shop?"]


def test_the_cli_exits_2_on_configuration_and_usage_errors(aws, monkeypatch, capsys):
    code, _, err = run_cli(capsys, "billing", "--days", "0")
    assert code == 2 and err.splitlines() == ["ecr-cost-bot: --days: expected 1 to 400, got 0"]
    monkeypatch.setenv("ECR_COST_REGIONS", "mars-1")
    code, _, err = run_cli(capsys, "scan")
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("ecr-cost-bot: configuration error: ")


def test_the_cli_says_an_aws_refusal_in_one_line(aws, capsys):
    load([shop()])
    assert run_cli(capsys, "scan", "--quiet")[0] == 0
    aws.fail["DescribeRepositories"] = ("AccessDeniedException", "User: bot is not authorized to perform: "
                                                                 "ecr:DescribeRepositories")
    code, _, err = run_cli(capsys, "policy", "apply", "shop", "--yes")
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[0].startswith("ecr-cost-bot: ") and "AccessDeniedException: User: bot is not authorized" \
        in err.splitlines()[0]
