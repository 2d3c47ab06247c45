"""Progress on stderr for the CLI's long work beyond the scan: reading runtimes (in-use, guard)."""
from __future__ import annotations

import json

from tests.helpers.aws import load, repository, run_cli


def test_in_use_shows_the_runtime_reads_and_quiet_turns_it_off(aws, capsys, monkeypatch):
    monkeypatch.setattr("bot.progress.LINE_EVERY", 0.0)  # a line per step, not one every 10 s
    load([repository()])
    code, out, err = run_cli(capsys, "in-use", "--format", "json")
    assert code == 0 and json.loads(out) == []
    lines = [line for line in err.splitlines() if line.startswith("in-use: ")]
    reads = [line for line in lines if " runtime reads (ECS, Lambda in an account and region)" in line]
    assert reads and reads[0].startswith("in-use: 1 of "), err  # a line as each read ends (the last one: done)
    assert any(" accounts, " in line and " repositories read" in line for line in lines), err  # its scan first
    code, out, err = run_cli(capsys, "in-use", "--format", "json", "--quiet")
    assert code == 0 and "in-use: " not in err
