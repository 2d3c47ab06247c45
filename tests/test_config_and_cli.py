"""Configuration validation, CLI usage errors, the README documenting every command, and `demo`."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import build_parser, main
from bot.config import load_settings
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_documented_ones():
    settings = load_settings({})
    assert settings.schedule == "0 9 * * mon" and settings.timezone == "UTC"
    assert settings.price_per_gb_month == 0.10 and settings.unused_days == 90
    assert settings.owner_tag == "owner" and settings.db_path == "ecr-cost.db" and settings.port == 3000
    assert settings.slack_api_url == "https://slack.com/api/"
    assert [r["rulePriority"] for r in settings.base_policy["rules"]] == [1, 2, 3, 4]


def test_the_shipped_schedules_are_valid_crontabs_in_any_timezone():
    # load_settings skips the scheduler's own check for these (no apscheduler import in every command): they must hold
    from apscheduler.triggers.cron import CronTrigger

    from bot.config import SHIPPED_SCHEDULES, SWEEP_SCHEDULE

    settings = load_settings({})
    shipped = {settings.schedule, settings.guard_schedule, settings.watch_schedule, settings.sweep_schedule}
    assert shipped | {SWEEP_SCHEDULE} == SHIPPED_SCHEDULES
    for expression in SHIPPED_SCHEDULES:
        for timezone in ("UTC", "Pacific/Chatham", "America/St_Johns"):
            assert CronTrigger.from_crontab(expression, timezone=timezone).fields


def test_lists_are_parsed():
    settings = load_settings({"ECR_COST_REGIONS": "us-east-1, eu-west-1", "ECR_COST_ADMINS": "U012AB3CD,W0BOB1234",
                              "ECR_COST_ROLE_ARNS": "arn:aws:iam::111122223333:role/ecr-cost-reader",
                              "SLACK_API_URL": "http://127.0.0.1:9999/api"})
    assert settings.regions == ("us-east-1", "eu-west-1")
    assert settings.admins == ("U012AB3CD", "W0BOB1234")
    assert settings.role_arns == ("arn:aws:iam::111122223333:role/ecr-cost-reader",)
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"


@pytest.mark.parametrize("name, value", [
    ("ECR_COST_PRICE_PER_GB_MONTH", "ten cents"),
    ("ECR_COST_PRICE_PER_GB_MONTH", "-1"),
    ("ECR_COST_PRICE_PER_GB_MONTH", "nan"),
    ("ECR_COST_UNUSED_DAYS", "0"),
    ("ECR_COST_UNUSED_DAYS", "3.5"),
    ("PORT", "70000"),
    ("ECR_COST_SCHEDULE", "every monday"),
    ("ECR_COST_SCHEDULE", "0 25 * * mon"),
    ("ECR_COST_TIMEZONE", "Mars/Olympus"),
    ("ECR_COST_REGIONS", "us-east-1,Europe"),
    ("ECR_COST_REGIONS", "all,us-east-1"),
    ("ECR_COST_ORG_ROLE_NAME", "role/with/slashes"),
    ("ECR_COST_ORG_ROLE_NAME", "x" * 65),
    ("ECR_COST_ACCOUNTS", "1234"),
    ("ECR_COST_EXCLUDE_ACCOUNTS", "123456789012,prod"),
    ("ECR_COST_ROLE_ARNS", "arn:aws:iam::123:role/x"),
    ("ECR_COST_ADMINS", "alice"),
    ("ECR_COST_REPORT_CHANNEL", "#general"),
    ("SLACK_BOT_TOKEN", "xoxp-user-token"),
    ("SLACK_APP_TOKEN", "xoxb-not-an-app-token"),
    ("SLACK_API_URL", "slack.com/api"),
    ("ECR_COST_BASE_POLICY", "/nonexistent/policy.json"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as error:
        load_settings({name: value})
    message = str(error.value)
    assert message.startswith(f"{name}:") and "\n" not in message


@pytest.mark.parametrize("content, expected", [
    ("{not json" + " " * 100, "not valid JSON"),
    ('{"rules": []}' + " " * 100, "non-empty 'rules' list"),
    ('{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", '
     '"countNumber": 0}, "action": {"type": "expire"}}]}', "rule 1: selection.countNumber must be an integer >= 1"),
])
def test_a_bad_base_policy_file_is_refused(tmp_path, content, expected):
    path = tmp_path / "policy.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load_settings({"ECR_COST_BASE_POLICY": str(path)})


def test_cli_reports_configuration_errors_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("ECR_COST_UNUSED_DAYS", "soon")
    assert main(["scan"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "ecr-cost-bot: configuration error: ECR_COST_UNUSED_DAYS: expected a number, got 'soon'"


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["scan", "--format", "xml"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2


def test_an_unusable_database_path_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ECR_COST_DB", str(tmp_path / "missing-dir" / "x.db"))
    assert main(["repo", "web"]) == 1
    assert "ECR_COST_DB" in capsys.readouterr().err


def _commands(parser, prefix="ecr-cost-bot"):
    """(command line, parser) for every command and sub-command."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        yield prefix, parser
        return
    for name, child in sub.choices.items():
        yield from _commands(child, f"{prefix} {name}")


def test_every_command_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    commands = list(_commands(build_parser()))
    assert len(commands) >= 8
    for line, parser in commands:
        assert f"`{line}" in readme, f"README does not document `{line}`"
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in readme, f"README does not document {line} {flag}"


def _readme_section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"\n## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end != -1 else None]


def test_every_setting_the_code_reads_is_in_the_readmes_configuration_table():
    import re

    read = set()
    for path in (ROOT / "bot").rglob("*.py"):
        read |= set(re.findall(r"[\"'](ECR_COST_[A-Z_]+|SLACK_[A-Z_]+|PORT)[\"']", path.read_text()))
    table = _readme_section("Configuration")
    missing = sorted(name for name in read if f"`{name}`" not in table)
    assert len(read) >= 25 and not missing, f"README's Configuration table lacks {missing}"


def test_the_readme_is_a_guide_without_figures_that_go_stale():
    import re

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 400
    stale = re.findall(r"\b\d[\d,]* (?:tests|passed)\b|\bstays at \d+ blocks\b", readme)
    assert not stale, f"figures that go stale belong nowhere, or in docs/ with a date: {stale}"
    for page in re.findall(r"\]\((docs/[\w.-]+\.md)", readme):  # every page it links to exists
        assert (ROOT / page).is_file(), page


def test_demo_shows_the_whole_flow(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bot", "demo", "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300, cwd=workdir, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Sample registry: 40 repositories" in out
    assert " 1  legacy/monolith" in out and "40  eu/empty-placeholder" in out
    assert "40 repositories" in out and "overstated by shared layers" in out
    assert "as `ecr-cost-bot repo legacy/monolith` shows it" in out
    assert "as `ecr-cost-bot size tools/ci-runner` shows it" in out
    assert "layer 6 of 6, " in out and "new in 20 of the last 20 pushes: it is rebuilt every time" in out
    assert "Adopting the base policy" in out and "adopted the base policy on legacy/monolith" in out
    assert "ECR cost report: week of" in out and "saved by policies adopted through the bot" in out
    assert "tuned the base policy on" in out and "exempt (1," in out and "without an owner (" in out
    assert "https://app.slack.com/block-kit-builder/#" in out
    message = json.loads((tmp_path / "out" / "report.json").read_text())
    assert message["text"] and message["blocks"][0]["type"] == "header"
    assert (tmp_path / "out" / "report-chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(workdir.glob("*.db")), "demo must not write a database into the working directory"


def test_help_imports_none_of_the_heavy_libraries():
    """`--help` (and argument errors) start fast: boto3, Slack, DuckDB, matplotlib and sqlite-utils (which imports
    pandas whenever it is installed) are imported by the commands that use them."""
    heavy = ["boto3", "botocore", "slack_bolt", "slack_sdk", "duckdb", "pyarrow", "matplotlib", "sqlite_utils",
             "pandas", "numpy", "apscheduler", "waitress", "kubernetes"]
    probe = ("import sys\nfrom bot.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             f"print([m for m in {heavy!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert "ecr-cost-bot" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]"


def test_the_scan_path_loads_only_what_a_scan_needs():
    """`scan` (cron across an organisation) builds through wiring.scanning: the other services, Slack, the CUR
    readers, the scheduler and the dataframes sqlite-utils would import are not loaded; numpy still loads later."""
    not_needed = ["slack_bolt", "slack_sdk", "duckdb", "pyarrow", "matplotlib", "pandas", "numpy", "apscheduler",
                  "kubernetes", "waitress", "bot.adoption", "bot.application", "bot.watch", "bot.sweep", "bot.billing",
                  "bot.report", "bot.usage"]
    probe = ("import importlib.util, sys\nimport bot.cli, bot.wiring, bot.store\n"
             f"print([m for m in {not_needed!r} if m in sys.modules])\n"
             "if importlib.util.find_spec('numpy'):\n    import numpy\n    print(numpy.float64(1.5) * 2)\n"
             "else:\n    print(3.0)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "3.0"]


def test_numpy_imported_by_another_thread_while_the_store_loads_works():
    """sqlite-utils is imported with numpy and pandas kept out only while the process has one thread: a thread
    importing pyarrow meanwhile would otherwise find numpy missing for the rest of the process."""
    probe = ("import sys, threading\n"
             "def other():\n"
             "    while 'sqlite_utils' not in sys.modules: pass\n"
             "    import pyarrow\n"
             "    print(pyarrow.array([1, 2]).to_numpy().sum())\n"
             "thread = threading.Thread(target=other); thread.start()\n"
             "import bot.store.sqlite\n"
             "thread.join()\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert done.stdout.split() == ["3"]


def test_every_iam_action_doctor_checks_is_in_the_readmes_iam_section():
    from bot.doctor import PERMISSIONS

    section = _readme_section("IAM permissions")
    missing = sorted({a for p in PERMISSIONS for a in p.actions} - set(re.findall(r"`([a-z0-9]+:[A-Za-z]+)`", section)))
    assert not missing, f"README's IAM section lacks {missing}"
