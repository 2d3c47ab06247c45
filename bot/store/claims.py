"""Claims with a holder and a lease (``repository_claims``): one change per repository at a time, one scan of the
estate at a time, across threads and processes sharing the store."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .database import Tables, to_iso
from .holders import CLAIM_LEASE


class Claims(Tables):
    def claim(self, key: str, holder: str, lease: timedelta = CLAIM_LEASE) -> bool:
        """True when ``holder`` may act on ``key`` (a repository ARN, or the estate's scan) now: nobody else, in
        any thread or process, holds it, or its holder stopped beating ``lease`` ago. The holder keeps it
        alive with ``refresh_claim`` and gives it back with ``release_claim``."""
        now = datetime.now(UTC)
        with self.db.conn:
            cursor = self.db.execute(
                "insert or ignore into repository_claims (arn, holder, claimed_at) values (?, ?, ?)",
                [key, holder, to_iso(now)])
            if cursor.rowcount == 1:
                return True
            cursor = self.db.execute("update repository_claims set holder = ?, claimed_at = ? where arn = ? "
                                     "and claimed_at < ?", [holder, to_iso(now), key, to_iso(now - lease)])
        return cursor.rowcount == 1

    def refresh_claim(self, key: str, holder: str) -> bool:
        with self.db.conn:
            cursor = self.db.execute("update repository_claims set claimed_at = ? where arn = ? and holder = ?",
                                     [to_iso(datetime.now(UTC)), key, holder])
        return cursor.rowcount == 1

    def claim_held(self, key: str, lease: timedelta = CLAIM_LEASE) -> bool:
        """Whether someone holds ``key`` and is alive."""
        row = self.db.execute("select 1 from repository_claims where arn = ? and claimed_at >= ?",
                              [key, to_iso(datetime.now(UTC) - lease)]).fetchone()
        return row is not None

    def release_claim(self, key: str, holder: str) -> None:
        with self.db.conn:
            self.db.execute("delete from repository_claims where arn = ? and holder = ?", [key, holder])
