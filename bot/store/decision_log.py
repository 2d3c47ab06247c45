"""What the bot changed and what it kept first: the decision log (``decisions``), the policy text before each
overwrite (``policy_backups``) and a repository's export before its deletion (``repository_exports``)."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast

from ..core.models import PolicyDecision, RepositoryRef
from .database import Tables, from_iso, to_iso


class DecisionLog(Tables):
    def save_backup(self, ref: RepositoryRef, policy_text: str | None, reason: str) -> int:
        """Stores the current policy (or that there was none) before anything overwrites it."""
        with self.db.conn:
            table = self.db.table("policy_backups").insert({
                "arn": ref.arn, "account_id": ref.account_id, "region": ref.region, "repository": ref.name,
                "had_policy": int(policy_text is not None), "policy_text": policy_text,
                "taken_at": to_iso(datetime.now(UTC)), "reason": reason})
        return cast(int, table.last_pk)  # set by the insert above

    def backup(self, backup_id: int) -> tuple[bool, str | None]:
        """(whether there was a policy, its exact text)."""
        row = self.db.table("policy_backups").get(backup_id)
        return bool(row["had_policy"]), row["policy_text"]

    def backup_count(self, arn: str) -> int:
        return self.db["policy_backups"].count_where("arn = ?", [arn])

    def record_decision(self, decision: PolicyDecision) -> PolicyDecision:
        values = {k: v for k, v in vars(decision).items() if k != "id"}
        values["at"] = to_iso(decision.at)
        values["owners_checked"] = json.dumps(decision.owners_checked)
        values["repository_created_at"] = to_iso(decision.repository_created_at)
        with self.db.conn:
            table = self.db.table("decisions").insert(values)
        return replace(decision, id=table.last_pk)

    def withdraw_decision(self, decision_id: int) -> None:
        """Removes a decision recorded just before a change that AWS then refused (the change never happened)."""
        with self.db.conn:
            self.db.execute("delete from decisions where id = ?", [decision_id])

    def decisions(self, arn: str | None = None, actions: tuple[str, ...] = ()) -> list[PolicyDecision]:
        """The decision log, oldest first; optionally one repository's, or some actions only."""
        where, params = [], []
        if arn:
            where.append("arn = ?")
            params.append(arn)
        if actions:
            where.append(f"action in ({','.join('?' * len(actions))})")
            params.extend(actions)
        rows = self.db["decisions"].rows_where(" and ".join(where) or None, params, order_by="id")
        return [_decision(r) for r in rows]

    def save_export(self, ref: RepositoryRef, user_id: str, content: str) -> int:
        """A repository's export, stored before it is deleted."""
        with self.db.conn:
            table = self.db.table("repository_exports").insert({
                "arn": ref.arn, "account_id": ref.account_id, "region": ref.region, "repository": ref.name,
                "user_id": user_id, "taken_at": to_iso(datetime.now(UTC)), "content": content})
        return cast(int, table.last_pk)  # set by the insert above


def _decision(row: dict) -> PolicyDecision:
    return PolicyDecision(
        id=row["id"], repository=row["repository"], account_id=row["account_id"], region=row["region"],
        arn=row["arn"], action=row["action"], user_id=row["user_id"], source=row["source"], at=from_iso(row["at"]),
        policy_before=row["policy_before"], policy_after=row["policy_after"],
        projected_monthly_savings_usd=row["projected_monthly_savings_usd"], backup_id=row["backup_id"],
        owners_checked=tuple(json.loads(row["owners_checked"] or "[]")), undoes=row["undoes"],
        repository_created_at=from_iso(row["repository_created_at"]), reason=row["reason"], note=row["note"],
        tag_before=row.get("tag_before"), tag_after=row.get("tag_after"), images=row.get("images"))
