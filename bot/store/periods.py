"""Scheduled runs by period (``report_runs``): who runs a period (the weekly report, and each job's "name:"
periods), kept alive while it runs, given back or finished."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .database import Tables, to_iso


class Periods(Tables):
    def claim_period(self, period: str, claimed_by: str, lease: timedelta = timedelta(minutes=10)) -> str | None:
        """Who reports ``period``, across threads and processes. Returns None when someone else has it or it
        was posted; else how it was claimed: 'new'; 'taken over' (the holder stopped beating for ``lease``:
        it died, maybe after posting); 'maybe posted' (a post whose answer was lost: check before posting)."""
        now = datetime.now(UTC)
        with self.db.conn:
            cursor = self.db.execute(
                "insert or ignore into report_runs (period, claimed_by, claimed_at, status) "
                "values (?, ?, ?, 'claimed')",
                [period, claimed_by, to_iso(now)])
            if cursor.rowcount == 1:
                return "new"
            cursor = self.db.execute(
                "update report_runs set claimed_by = ?, claimed_at = ? "
                "where period = ? and status = 'claimed' and claimed_at < ?",
                [claimed_by, to_iso(now), period, to_iso(now - lease)])
            if cursor.rowcount == 1:
                return "taken over"
            cursor = self.db.execute(
                "update report_runs set claimed_by = ?, claimed_at = ?, status = 'claimed' "
                "where period = ? and status = 'maybe_posted'", [claimed_by, to_iso(now), period])
        return "maybe posted" if cursor.rowcount == 1 else None

    def heartbeat_period(self, period: str, claimed_by: str) -> bool:
        """Keeps a claim alive while its run is; False when it was lost."""
        with self.db.conn:
            cursor = self.db.execute("update report_runs set claimed_at = ? where period = ? and claimed_by = ? "
                                     "and status = 'claimed'", [to_iso(datetime.now(UTC)), period, claimed_by])
        return cursor.rowcount == 1

    def release_period(self, period: str, claimed_by: str) -> None:
        """Gives a claim back when nothing was posted, so that a later run can report the period (only the
        holder's own claim: one taken over meanwhile belongs to someone else)."""
        with self.db.conn:
            self.db.execute("delete from report_runs where period = ? and status = 'claimed' and claimed_by = ?",
                            [period, claimed_by])

    def holds_period(self, period: str, claimed_by: str) -> bool:
        row = self.db.execute("select 1 from report_runs where period = ? and claimed_by = ? and status = 'claimed'",
                              [period, claimed_by]).fetchone()
        return row is not None

    def finish_period(self, period: str, claimed_by: str, status: str, message_ts: str | None = None,
                      error: str | None = None) -> None:
        """``status``: 'posted', or 'maybe_posted' (the request left and its answer was lost). A result always
        lands: a claim lost meanwhile must not hide that something was posted."""
        with self.db.conn:
            self.db.execute("update report_runs set status = ?, message_ts = ?, error = ?, finished_at = ?, "
                            "claimed_by = ? where period = ?", [status, message_ts, error,
                                                                to_iso(datetime.now(UTC)), claimed_by, period])

    def has_reported(self) -> bool:
        """Whether a weekly report was ever posted (or may have been) from this database; the other jobs'
        periods carry a "name:" prefix, a report's period is a bare ISO time."""
        return self.db.execute("select 1 from report_runs where status in ('posted', 'maybe_posted') "
                               "and period glob '[0-9]*' limit 1").fetchone() is not None

    def period_run(self, period: str) -> dict | None:
        rows = list(self.db["report_runs"].rows_where("period = ?", [period]))
        return rows[0] if rows else None
