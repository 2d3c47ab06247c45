"""--format csv: every data command's JSON as one CSV table, the same figures as its JSON."""
from __future__ import annotations

import csv
import io
import json

from bot.render.text import document_csv
from tests.helpers.aws import load, repository, run_cli


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_document_becomes_one_table_with_a_section_per_list_and_its_problems_apart():
    doc = {"partial": True, "generated_at": "2026-12-05T00:00:00Z",
           "growth": [{"repository": "a", "where": {"region": "us-east-1"}, "tags": ["v1", "v2"],
                       "layers": [{"digest": "sha256:1"}]}],
           "over_limit": [{"repository": "b", "limit_usd": 5.0, "note": None}],
           "errors": [{"account_id": "1", "message": "denied"}], "warnings": ["slow"]}
    text, notes = document_csv(doc)
    found = rows(text)
    assert [r["section"] for r in found] == ["growth", "over_limit"]
    assert found[0]["where.region"] == "us-east-1" and found[0]["tags"] == "v1 v2"
    assert json.loads(found[0]["layers"]) == [{"digest": "sha256:1"}]
    assert found[1]["limit_usd"] == "5.0" and found[1]["note"] == "" and found[0]["limit_usd"] == ""
    assert notes[0].startswith("the result is PARTIAL") and "denied" in notes[1] and notes[2] == "slow"
    # a list is its own rows; a document without a list is one row
    assert rows(document_csv([{"id": 1}, {"id": 2}])[0]) == [{"id": "1"}, {"id": "2"}]
    assert rows(document_csv({"ok": True, "checks": []})[0]) == [{"ok": "True", "checks": ""}]


def test_every_data_command_prints_its_json_as_csv(aws, capsys):
    load([repository()])
    assert run_cli(capsys, "scan")[0] == 0
    for command in (["report"], ["repo", "shop"], ["in-use"], ["decisions"], ["policy", "preview", "shop"],
                    ["size", "shop"]):
        code, out, _ = run_cli(capsys, *command, "--format", "json")
        assert code == 0, command
        doc = json.loads(out)
        code, out, _ = run_cli(capsys, *command, "--format", "csv")
        assert code == 0, command
        table = rows(out)
        expected, _ = document_csv(doc)
        assert out == expected, command  # the CSV is exactly that JSON's table
        lists = {k: v for k, v in doc.items() if isinstance(v, list) and v and isinstance(v[0], dict)
                 and k not in ("errors", "warnings")} if isinstance(doc, dict) else {"": doc}
        assert len(table) == (sum(len(v) for v in lists.values()) or (1 if isinstance(doc, dict) else 0)), command
    code, out, _ = run_cli(capsys, "report", "--format", "csv")
    report = rows(out)
    top = [r for r in report if r.get("section") == "top"]
    assert top and top[0]["repository"] == "shop"
    # the figures are the JSON's, unformatted
    doc = json.loads(run_cli(capsys, "report", "--format", "json")[1])
    assert float(top[0]["monthly_cost_usd"]) == doc["top"][0]["monthly_cost_usd"]
