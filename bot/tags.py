"""Repository tags the bot sets for an owner (a monthly limit) or an admin (an approved ownership claim): recorded
with the value before and after, withdrawn when AWS surely did not set it. Who may act: ``Gate``.
"""
from __future__ import annotations

from .aws.ecr import EcrCollector
from .core.models import PolicyDecision, RepositoryRef
from .errors import AwsError, PolicyOperationError, describe
from .gate import Actor, Change, Gate


class TagChanges:
    def __init__(self, collector: EcrCollector, gate: Gate):
        self._collector = collector
        self._gate = gate

    def set_tag(self, ref: RepositoryRef, key: str, value: str | None, actor: Actor, action: str, note: str,
                expect: tuple[str | None] | None = None, undoes: int | None = None) -> Change:
        """Sets (``value`` None: removes) the repository tag ``key`` for an owner or an admin and records it with the
        value before and after (what an undo restores). ``expect``: the value the tag must have now (an undo refuses
        a tag changed since)."""
        with self._gate.claimed(ref):
            tags, owners, born = self._gate.authorised_tags(ref, actor)
            before = tags.get(key)
            if expect is not None and before != expect[0]:
                raise PolicyOperationError(f"the {key} tag of {ref.name} was changed since ({before!r}); nothing was "
                                           f"changed")
            if before == value:
                return Change(None, f"{ref.name} already has {key}={value}; nothing was changed" if value is not None
                              else f"{ref.name} has no {key} tag; nothing was changed")
            decision = self._gate.record(ref, action, actor, owners, None, None, None, None, undoes=undoes, born=born,
                                         note=note, tag_before=before, tag_after=value)
            error = self.put_tag(ref, key, value, decision)
            if error is not None:
                raise PolicyOperationError(f"AWS refused to tag {ref.name}: {describe(error)}; nothing was "
                                           f"changed") from None
            return Change(decision)

    def put_tag(self, ref: RepositoryRef, key: str, value: str | None, decision: PolicyDecision) -> AwsError | None:
        """Sets (``value`` None: removes) the tag ``decision`` records. When AWS refuses and the tag is surely not
        as asked, the decision is withdrawn and AWS's error returned; when it cannot be told, the record stays (an
        undo stays possible)."""
        try:
            if value is None:
                self._collector.untag_repository(ref, key)
            else:
                self._collector.tag_repository(ref, key, value)
            return None
        except AwsError as exc:
            error = exc
        try:
            happened = self._collector.read_tags(ref).get(key) == value
        except AwsError:
            happened = True  # cannot tell: keep the record
        if happened:
            return None
        self._gate.withdraw(decision)
        return error
