"""One honest number: what adopting the base policy saves is what its adopted (protected) form frees, and every
surface states the same figures (CLI text and JSON, the Slack detail, Preview, Adjust, App Home, the weekly report)
for a repository with in-use images. And every figure is written one way (bot/format.py)."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.config import load_settings
from bot.format import iso, json_usd, per_month, plural, size, slack_date, usd
from bot.wiring import cli_actor, components
from tests.helpers.aws import ACCOUNT, load, repository, run_cli

OWNER = "U0APIOWNR"
ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/api"


@pytest.fixture
def estate(in_use_estate):
    """The api repository running in ECS and Lambda (the in_use_estate fixture of tests/conftest.py)."""
    return in_use_estate


class ViewsClient:
    """What refresh_adjust needs of Slack's client: views.update, recorded."""

    def __init__(self):
        self.updates = []

    def views_update(self, view_id, view, hash=None):  # noqa: A002 - Slack's own argument name
        self.updates.append(view)


def texts(message) -> str:
    return json.dumps(message, ensure_ascii=False)


def test_every_surface_states_what_adopting_frees_the_same_way(estate, capsys, monkeypatch):  # noqa: F811
    from bot.jobs import period_start
    from bot.render import blocks
    from bot.render.report import report_json, report_message, report_text
    from bot.slack.actions import act
    from bot.slack.views import refresh_adjust

    monkeypatch.setenv("ECR_COST_PRICE_PER_GB_MONTH", "100")  # cents apart: the figures tell as written from adopted
    assert run_cli(capsys, "scan")[0] == 0
    settings = load_settings()
    with components(settings) as built:
        application = built.application
        scan, row = application.find("api")
        savings = application.preview(row, scan=scan).savings
        # the case that matters: the policy as written would expire running images, adopting keeps them
        assert savings.written_in_use_expiring >= 2 and savings.in_use_checked
        assert savings.expiring_count < savings.written_expiring_count
        assert savings.monthly_usd < savings.written_monthly_usd
        adopting = f"expires {savings.expiring_count} of {savings.image_count} images, freeing " \
                   f"{size(savings.bytes_freed)}"
        dollars = per_month(savings.monthly_usd)
        written = (f"as written it would expire {savings.written_expiring_count} "
                   f"({savings.written_in_use_expiring} of them running) and free "
                   f"{per_month(savings.written_monthly_usd)}")

        surfaces = {}
        code, out, err = run_cli(capsys, "repo", "api")
        assert code == 0, err
        surfaces["repo NAME"] = out
        code, out, err = run_cli(capsys, "policy", "preview", "api")
        assert code == 0, err
        surfaces["policy preview"] = out
        assert out.splitlines()[1].strip().startswith(f"adopting it (in-use images kept) {adopting}: {dollars}")
        surfaces["Slack detail"] = texts(blocks.repository_detail(application.detail("api")))
        preview = act(application, None, blocks.PREVIEW, ARN, "U0SOMEONE", "click-1")
        surfaces["Preview"] = texts(preview.ephemeral_message)
        client = ViewsClient()
        refresh_adjust(application, client, {**blocks.adjust_modal("api", ARN, {}, "…"), "id": "V1", "hash": "h"})
        [adjusted] = client.updates
        surfaces["Adjust"] = texts(adjusted)
        own, summary = application.views_owned(lambda entry: entry == OWNER)
        surfaces["App Home"] = texts(blocks.home_view(own, summary, False))
        surfaces["owner DM"] = texts(blocks.repository_detail(application.view(scan, row)))
        report = application.weekly_report(scan, period_start(settings, datetime.now(UTC)))
        surfaces["report text"] = report_text(report)
        surfaces["report blocks"] = texts(report_message(report))

        for name, text in surfaces.items():
            assert adopting in text.replace("*", ""), name
            assert dollars in text, name
            # the policy as written only ever on its own line that says so
            assert per_month(savings.written_monthly_usd) not in text.replace(written, "").replace(
                written[:1].upper() + written[1:], ""), name
        for name in ("repo NAME", "policy preview", "Slack detail", "Preview", "owner DM"):
            assert written in surfaces[name] or written[:1].upper() + written[1:] in surfaces[name], name

        # JSON: the same figures, four decimals
        code, out, _ = run_cli(capsys, "policy", "preview", "api", "--format", "json")
        doc = json.loads(out)
        assert doc["expiring_image_count"] == savings.written_expiring_count  # the top level: as written
        assert doc["monthly_savings_usd"] == json_usd(savings.written_monthly_usd)
        assert doc["adopted_form"]["expiring_image_count"] == savings.expiring_count  # what adopting does
        assert doc["adopted_form"]["monthly_savings_usd"] == json_usd(savings.monthly_usd)
        assert doc["adopted_form"]["bytes_freed"] == savings.bytes_freed
        assert len([d for d in doc["adopted_form"]["expiring"] if d["action"] == "expire"]) == savings.expiring_count
        code, out, _ = run_cli(capsys, "repo", "api", "--format", "json")
        base = json.loads(out)["base_policy"]
        assert (base["expiring_image_count"], base["monthly_savings_usd"], base["bytes_freed"]) == \
               (savings.expiring_count, json_usd(savings.monthly_usd), savings.bytes_freed)
        assert base["as_written"]["expiring_image_count"] == savings.written_expiring_count
        doc = report_json(report)
        assert doc["base_policy_savings_usd"] == json_usd(savings.monthly_usd)  # the sum of what adopting frees
        [entry] = doc["base_policy_savings"]
        assert (entry["repository"], entry["expiring_image_count"], entry["monthly_savings_usd"]) == \
               ("api", savings.expiring_count, json_usd(savings.monthly_usd))

        # what is adopted is what was promised: the decision records the same projection
        change = application.adopt(row, cli_actor("tester"))
        assert change.decision.projected_monthly_savings_usd == pytest.approx(savings.monthly_usd)


MIXED = [re.compile(p) for p in (r"/mo\b", r"\d{2}:\d{2}:\d{2}\.\d+", r"\+00:00", r"\bNONE\b", r"\b1 images\b",
                                  r"\b1 repositories\b", r"\d{1,3}(,\d{3}){2,} bytes")]


def test_no_text_mixes_conventions(estate, capsys):  # noqa: F811
    """No /mo, no microseconds or +00:00 offsets, no shouted status, no "1 images", no raw byte counts."""
    assert run_cli(capsys, "scan")[0] == 0
    outputs = [run_cli(capsys, *argv)[1] for argv in (("scan",), ("repo", "api"), ("policy", "preview", "api"),
                                                      ("report",), ("decisions",), ("size", "api"))]
    code, out, _ = run_cli(capsys, "repo", "api", "--format", "json")
    outputs.append(out)
    for text in outputs:
        for pattern in MIXED:
            assert not pattern.search(text), (pattern.pattern, text[:2000])
    doc = json.loads(out)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["scanned_at"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["last_pushed_at"])


@pytest.mark.parametrize("amount, text", [(1234.5678, "$1,234.57/month"), (0.004, "$0.00/month"),
                                          (-0.004, "$0.00/month"), (-3.2, "-$3.20/month")])
def test_money_is_written_one_way(amount, text):
    assert per_month(amount) == text and usd(amount) == text.removesuffix("/month")
    assert json_usd(1 / 3) == 0.3333


@pytest.mark.parametrize("byte_count, text", [(2**30, "1.00 GB"), (21_863_407_727, "20.36 GB"), (2**30 - 1, "1,024 MB"),
                                              (512 * 2**20, "512 MB"), (5 * 2**20 + 2**19, "5.5 MB"), (0, "0.0 MB")])
def test_sizes_are_gb_of_2_30_with_mb_below(byte_count, text):
    assert size(byte_count) == text


def test_times_are_utc_to_the_second_and_slack_gets_date_tokens():
    moment = datetime(2026, 11, 27, 20, 1, 21, 584000, tzinfo=timezone(timedelta(hours=-5)))
    assert iso(moment) == "2026-11-28T01:01:21Z"
    assert slack_date(moment) == "<!date^1795827681^{date_short_pretty} {time}|2026-11-28 01:01 UTC>"
    assert plural(1, "image") == "1 image" and plural(2, "repository") == "2 repositories"


def test_the_report_says_its_period_and_generation_in_the_configured_zone(aws, capsys, monkeypatch):

    load([repository()])
    monkeypatch.setenv("ECR_COST_TIMEZONE", "America/New_York")
    code, out, err = run_cli(capsys, "report")
    assert code == 0, err
    assert re.search(r"\(generated \d{4}-\d\d-\d\d \d\d:\d\d America/New_York\)", out.splitlines()[0]), out[:300]
