"""Exactly-once records, by any thread or process: a Slack interaction handled (``slack_clicks``), a nudge sent
(``nudges``), a watch finding sent (``watch_findings``)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from .database import Tables, to_iso


class Deliveries(Tables):
    def claim_click(self, click_id: str) -> bool:
        """True the first time ``click_id`` is seen, by any thread or process."""
        with self.db.conn:
            cursor = self.db.execute("insert or ignore into slack_clicks (click_id, claimed_at) values (?, ?)",
                                     [click_id, to_iso(datetime.now(UTC))])
        return cursor.rowcount == 1

    def claim_nudge(self, period: str, arn: str, user_id: str) -> bool:
        with self.db.conn:
            cursor = self.db.execute("insert or ignore into nudges (period, arn, user_id, sent_at) values (?, ?, ?, ?)",
                                     [period, arn, user_id, to_iso(datetime.now(UTC))])
        return cursor.rowcount == 1

    def claim_finding(self, period: str, finding: str, user_id: str) -> bool:
        """True the first time ``finding`` (a watch finding's kind and repository) goes to ``user_id`` in ``period``."""
        with self.db.conn:
            cursor = self.db.execute("insert or ignore into watch_findings (period, finding, user_id, sent_at) "
                                     "values (?, ?, ?, ?)", [period, finding, user_id, to_iso(datetime.now(UTC))])
        return cursor.rowcount == 1

    def release_findings(self, period: str, findings: Sequence[str], user_id: str) -> None:
        """Gives findings back when their message could not be sent: a later run sends them."""
        with self.db.conn:
            self.db.conn.executemany("delete from watch_findings where period = ? and finding = ? and user_id = ?",
                                     [(period, f, user_id) for f in findings])
