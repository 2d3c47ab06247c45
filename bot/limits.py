"""Per-repository monthly limits: the repository tag ``ecr-cost-limit-usd``, set by an owner in Slack (Set a
limit…), recorded in the decision log and undoable. Who may act is decided by the gate (bot/gate.py) from the owner tag
as AWS has it at the change.
"""
from __future__ import annotations

from .core.models import PolicyDecision, RepositoryCost
from .core.watch import LIMIT_TAG, format_limit_value, parse_limit
from .errors import PolicyOperationError
from .gate import Actor, Change
from .scans import ref_of
from .store import Store
from .tags import TagChanges

LIMIT_SET, LIMIT_UNDONE = "limit_set", "limit_undone"
MAX_LIMIT_USD = 10_000_000.0


def read_amount(text: str | None) -> tuple[float | None, str | None]:
    """(the limit typed in a form, a problem to show on the input). Empty: no limit (the tag is removed)."""
    if text is None or not text.strip():
        return None, None
    limit, problem = parse_limit(text)
    if problem is not None:
        return None, "Type the monthly limit in USD, a positive number like 5 or 12.50 (empty: no limit)."
    assert limit is not None  # text given, no problem: a number
    if limit > MAX_LIMIT_USD:
        return None, f"At most {MAX_LIMIT_USD:,.0f} USD per month."
    return limit, None


class LimitService:
    def __init__(self, tags: TagChanges, store: Store):
        self._tags, self._store = tags, store

    def set_limit(self, row: RepositoryCost, actor: Actor, limit: float | None) -> Change:
        """Sets the limit (None: removes it)."""
        value = None if limit is None else format_limit_value(limit)
        note = f"{LIMIT_TAG}={value}" if value is not None else f"{LIMIT_TAG} removed"
        return self._tags.set_tag(ref_of(row), LIMIT_TAG, value, actor, LIMIT_SET, note)

    def last_undoable(self, arn: str) -> PolicyDecision | None:
        """The latest limit change not yet undone."""
        stack: list[PolicyDecision] = []
        for decision in self._store.decisions(arn, actions=(LIMIT_SET, LIMIT_UNDONE)):
            if decision.action == LIMIT_SET:
                stack.append(decision)
            else:
                stack = [d for d in stack if d.id != decision.undoes]
        return stack[-1] if stack else None

    def undo(self, row: RepositoryCost, actor: Actor) -> Change:
        """Restores the tag as it was before the latest limit change (removes it when there was none); refuses when
        the tag was changed since."""
        last = self.last_undoable(row.arn)
        if last is None:
            raise PolicyOperationError(f"no limit change of {row.repository} to undo; nothing was changed")
        note = f"{LIMIT_TAG} back to {last.tag_before}" if last.tag_before is not None else f"{LIMIT_TAG} removed"
        return self._tags.set_tag(ref_of(row), LIMIT_TAG, last.tag_before, actor, LIMIT_UNDONE, note,
                                     expect=(last.tag_after,), undoes=last.id)
