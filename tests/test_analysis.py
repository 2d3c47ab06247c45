"""Ranking, summary, name lookup and the output formats (pure)."""
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import shipped_base_policy_text
from bot.core.analysis import display_names, find_repository, rank, summarize
from bot.core.models import ScanProblem, ScanResult
from bot.core.tuning import lifecycle_status
from bot.errors import AmbiguousOrUnknownName
from bot.render.text import scan_csv, scan_json, scan_table
from tests.helpers.rows import row


def test_rank_is_stored_bytes_descending_then_name():
    ranked = rank([row("b", 10), row("a", 10), row("c", 30), row("d", 0)])
    assert [r.repository for r in ranked] == ["c", "a", "b", "d"]


@given(st.lists(st.tuples(st.text("abc", min_size=1, max_size=3), st.integers(0, 10**12)), max_size=30))
def test_rank_is_a_sorted_permutation_and_totals_add_up(items):
    rows = [row(name, size, region=f"r{i}") for i, (name, size) in enumerate(items)]
    ranked = rank(rows)
    assert sorted(map(id, ranked)) == sorted(map(id, rows))
    keys = [(-r.stored_bytes, r.repository) for r in ranked]
    assert keys == sorted(keys)
    summary = summarize(ranked)
    assert summary.stored_bytes == sum(size for _, size in items)
    assert len(summary.above_median) == sum(1 for r in ranked if r.monthly_cost_usd > summary.median_monthly_cost_usd)


def test_summary_median_and_above_median():
    ranked = rank([row("a", 4 * 2**30), row("b", 2 * 2**30), row("c", 1 * 2**30), row("d", 0)])
    summary = summarize(ranked)
    assert summary.median_monthly_cost_usd == pytest.approx(0.15)
    assert summary.above_median == ("a", "b")
    assert summarize([]).median_monthly_cost_usd == 0


def test_find_by_name_region_name_and_arn():
    rows = [row("web", 1), row("api", 2, region="eu-west-1"), row("api", 3)]
    assert find_repository(rows, "web").repository == "web"
    assert find_repository(rows, "eu-west-1/api").region == "eu-west-1"
    assert find_repository(rows, rows[2].arn) is rows[2]
    with pytest.raises(AmbiguousOrUnknownName) as ambiguous:
        find_repository(rows, "api")
    assert ambiguous.value.candidates == ["eu-west-1/api", "us-east-1/api"]
    with pytest.raises(AmbiguousOrUnknownName) as unknown:
        find_repository(rows, "wbe")
    assert "no repository named 'wbe'" in str(unknown.value) and "web" in unknown.value.candidates
    with pytest.raises(AmbiguousOrUnknownName):
        find_repository(rows, "arn:aws:ecr:us-east-1:123456789012:repository/nope")


def test_display_names_are_the_shortest_unique_form():
    rows = [row("web", 1), row("api", 2, region="eu-west-1"), row("api", 3),
            row("x", 1, account="111111111111"), row("x", 1)]
    names = display_names(rows)
    assert names[rows[0].arn] == "web" and names[rows[1].arn] == "eu-west-1/api"
    assert names[rows[3].arn] == rows[3].arn


def test_csv_rounds_to_whole_megabytes_and_cents_and_quotes_safely():
    text = scan_csv(rank([row("big", 1536 * 2**20 + 600_000), row('we"ird,name', 10)]))
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed == [["Repositories", "Size", "Expected Cost"], ["big", "1537", "0.15"], ['we"ird,name', "0", "0.00"]]


def _result(rows, errors=()):
    return ScanResult(datetime(2026, 11, 27, tzinfo=UTC), 0.1, rank(rows), list(errors), [])


def test_json_marks_partial_results_and_names_the_failure():
    doc = scan_json(_result([row("a", 1)], [ScanProblem("123456789012", "eu-west-1", "AccessDenied: no")]))
    assert doc["partial"] is True
    assert doc["errors"] == [{"account_id": "123456789012", "region": "eu-west-1", "message": "AccessDenied: no"}]
    assert json.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize("count", [0, 1, 3])
def test_the_streamed_scan_document_is_written_as_the_plain_one(count):
    """`scan --format json` makes each repository's document as it writes it: the same text, empty list included."""
    result = _result([row(f"r{i}", i * 2**20) for i in range(count)], [ScanProblem("1", "eu-west-1", "no")])
    written = io.StringIO()
    json.dump(scan_json(result, streamed=True), written, indent=2)
    assert written.getvalue() == json.dumps(scan_json(result), indent=2)
    assert len(json.loads(written.getvalue())["repositories"]) == count


def test_csv_written_row_by_row_is_the_returned_text():
    ranked = rank([row("a", 5 * 2**20), row("b", 2**20)])
    written = io.StringIO()
    assert scan_csv(ranked, written) == ""
    assert written.getvalue() == scan_csv(ranked)


def test_table_of_an_empty_estate_and_a_partial_one():
    base = json.loads(shipped_base_policy_text())
    assert "0 repositories" in scan_table(_result([]), base)
    text = scan_table(_result([row("a", 1)], [ScanProblem("1", "eu-west-1", "AccessDenied: no")]), base)
    assert "PARTIAL RESULT" in text and "eu-west-1" in text


def test_lifecycle_status():
    base = json.loads(shipped_base_policy_text())
    assert lifecycle_status(None, base) == "none"
    reordered = {"rules": [dict(r, description="mine") for r in reversed(base["rules"])]}
    assert lifecycle_status(json.dumps(reordered), base) == "base"
    assert lifecycle_status(json.dumps({"rules": base["rules"][:1]}), base) == "custom (1 rule)"
    assert lifecycle_status("{", base) == "custom (unreadable JSON)"
