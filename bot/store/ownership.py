"""Ownership claims (``ownership_claims``): a person's "I own this" on a repository, waiting for an admin's
approval."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from ..core.models import RepositoryRef
from .database import Tables, to_iso


class OwnershipClaims(Tables):
    def add_ownership_claim(self, ref: RepositoryRef, claimer: str) -> tuple[int, bool]:
        """(the claim's id, whether it is new): one pending claim per person and repository."""
        with self.db.conn:
            pending = list(self.db["ownership_claims"].rows_where(
                "arn = ? and claimer = ? and status = 'pending'", [ref.arn, claimer], limit=1))
            if pending:
                return pending[0]["id"], False
            table = self.db.table("ownership_claims").insert({
                "arn": ref.arn, "account_id": ref.account_id, "region": ref.region, "repository": ref.name,
                "claimer": claimer, "claimed_at": to_iso(datetime.now(UTC)), "status": "pending"})
        return cast(int, table.last_pk), True  # set by the insert above

    def ownership_claim(self, claim_id: int) -> dict | None:
        rows = list(self.db["ownership_claims"].rows_where("id = ?", [claim_id], limit=1))
        return rows[0] if rows else None

    def decide_ownership_claim(self, claim_id: int, status: str, decided_by: str, only_from: str = "pending") -> bool:
        """Moves a claim from ``only_from`` to ``status``; False when another decision got there first."""
        with self.db.conn:
            cursor = self.db.execute(
                "update ownership_claims set status = ?, decided_by = ?, decided_at = ? where id = ? and status = ?",
                [status, decided_by, to_iso(datetime.now(UTC)), claim_id, only_from])
        return cursor.rowcount == 1
