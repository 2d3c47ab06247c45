"""Billing answers (``billing_cache``): Cost Explorer charges each request and the CUR is large, so one answer per
source and period per UTC day."""
from __future__ import annotations

from datetime import UTC, datetime

from .database import Tables, to_iso


class BillingCache(Tables):
    def cached_billing(self, key: str, day: str) -> str | None:
        """The answer stored for ``key`` on the UTC ``day`` (an ISO date), or None."""
        rows = list(self.db["billing_cache"].rows_where("key = ? AND day = ?", [key, day]))
        return rows[0]["payload"] if rows else None

    def cache_billing(self, key: str, day: str, payload: str) -> None:
        self.db.table("billing_cache").upsert({"key": key, "day": day, "payload": payload,
                                         "fetched_at": to_iso(datetime.now(UTC))}, pk="key")
