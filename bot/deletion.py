"""Deleting a repository nobody uses: checked on a fresh read at that moment, exported (and the export handed to
the person) before anything is deleted, the deletion recorded. Who may act: ``Gate``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .aws.ecr import EcrCollector
from .config import Settings
from .core.cost import price_repository
from .core.models import PolicyDecision, RepositoryCost, RepositoryInventory, RepositoryRef
from .errors import AwsError, PolicyOperationError, describe
from .format import iso, plural, size
from .gate import Actor, Gate, read_error
from .store import Store
from .usage import InUseFinder


@dataclass(frozen=True)
class Deletion:
    """A repository deleted: the decision, and the export kept before (also in the store, by its id)."""

    decision: PolicyDecision
    export_id: int
    export: str  # the JSON text
    row: RepositoryCost  # the repository as it was just before
    note: str | None = None


class RepositoryDeletion:
    def __init__(self, collector: EcrCollector, gate: Gate, store: Store, settings: Settings, in_use: InUseFinder,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._collector = collector
        self._gate = gate
        self._store = store
        self._settings = settings
        self._in_use = in_use
        self._clock = clock

    def delete_repository(self, ref: RepositoryRef, actor: Actor, check_unused: bool = True,
                          deliver: Callable[[int, str], None] | None = None) -> Deletion:
        """Exports, then deletes, a repository nobody uses: unused for ECR_COST_UNUSED_DAYS (``check_unused``) and,
        always, no image in use anywhere the bot looks, with nothing it could not see. Everything is checked on
        a fresh read at this moment. The export (every image's digest, tags, times and manifest JSON, the tags
        and the lifecycle policy) is stored, then handed to ``deliver`` (export id, JSON text: a file for the
        person), before the repository is deleted; a delivery that fails deletes nothing."""
        with self._gate.claimed(ref):
            owners, born = self._gate.authorise(ref, actor)
            inventory = self._gate.live_inventory(ref)
            now = self._clock()
            row, _ = price_repository(inventory, price_per_gb_month=self._settings.price_per_gb_month,
                                      unused_days=self._settings.unused_days, owner_tag=self._settings.owner_tag,
                                      now=now)
            self._check_unused(ref, inventory, row, check_unused)
            content = self._export(ref, inventory, row, now)
            export_id = self._store.save_export(ref, actor.user_id, content)
            try:
                if deliver is not None:
                    deliver(export_id, content)
            except Exception as exc:  # noqa: BLE001 - whatever the channel, the person must have it first
                raise PolicyOperationError(f"the export of {ref.name} (#{export_id}, kept by the bot) could not be "
                                           f"delivered to you ({exc}); nothing was deleted") from None
            try:  # an image pushed while the export was taken or delivered would go unexported: look again
                now_there = self._collector.image_digests(ref)
            except AwsError as exc:
                raise read_error(ref, exc) from None
            if now_there != {i.digest for i in inventory.images}:
                raise PolicyOperationError(f"{ref.name} changed while it was being exported "
                                           f"({len(now_there - {i.digest for i in inventory.images})} image(s) "
                                           f"pushed, {len({i.digest for i in inventory.images} - now_there)} gone); "
                                           f"nothing was deleted: look again before deleting it")
            decision = self._gate.record(ref, "deleted", actor, owners, inventory.lifecycle_policy, None,
                                         row.monthly_cost_usd, None, born=born,
                                         note=f"export #{export_id}: {plural(row.image_count, 'image')}, "
                                              f"{size(row.stored_bytes)}")
            self._delete(ref, decision, export_id)
            return Deletion(decision, export_id, content, row)

    def _check_unused(self, ref: RepositoryRef, inventory: RepositoryInventory, row: RepositoryCost,
                      check_unused: bool) -> None:
        """Raises unless nothing pushes, pulls or runs from the repository (with nothing the bot could not see)."""
        if check_unused and not row.unused:
            last = max((t for t in (row.last_pushed_at, row.last_pulled_at) if t), default=None)
            raise PolicyOperationError(
                f"{ref.name} is not unused: an image was pushed or pulled {last:%Y-%m-%d %H:%M} UTC, within "
                f"{self._settings.unused_days} days; nothing was deleted")
        found = self._in_use.repository(ref, inventory.images, inventory.manifests, fresh=True, who_may_pull=True)
        used = found.of(ref.account_id, ref.region, ref.name)
        if used:
            where = sorted({f"{u.kind} {u.name}" for usages in used.values() for u in usages})
            raise PolicyOperationError(f"{ref.name} has {len(used)} image(s) in use ({', '.join(where[:5])}"
                                       f"{' …' if len(where) > 5 else ''}); nothing was deleted")
        if found.partial:
            raise PolicyOperationError(
                f"the in-use check of {ref.name} is partial, so the bot cannot tell that nothing runs from it; "
                f"nothing was deleted", [f"{p.source} in {p.account_id} {p.region}: {p.message}"
                                         for p in found.problems])

    def _export(self, ref: RepositoryRef, inventory: RepositoryInventory, row: RepositoryCost, now: datetime) -> str:
        try:
            documents, failures = self._collector.manifest_documents(ref, [i.digest for i in inventory.images])
        except AwsError as exc:
            raise read_error(ref, exc) from None
        if failures:
            raise PolicyOperationError(f"{len(failures)} manifest(s) of {ref.name} could not be exported; "
                                       f"nothing was deleted", failures)
        return export_document(inventory, documents, row, now)

    def _delete(self, ref: RepositoryRef, decision: PolicyDecision, export_id: int) -> None:
        """DeleteRepository; when it fails, AWS is read again: the record is withdrawn only if the repository is
        surely still there (an answer lost may hide a deletion done)."""
        try:
            self._collector.delete_repository(ref)
        except AwsError as exc:
            exists = self._exists(ref)
            if exists is False:  # the answer was lost, the deletion was not
                return
            if exists is None:
                raise PolicyOperationError(f"deleting {ref.name} failed ({describe(exc)}) and whether it "
                                           f"still exists cannot be read: the deletion stays recorded "
                                           f"(decision #{decision.id}, export #{export_id})") from None
            self._gate.withdraw(decision)
            raise PolicyOperationError(f"AWS refused to delete {ref.name}: {describe(exc)}; nothing was "
                                       f"deleted (export #{export_id} kept)") from None

    def _exists(self, ref: RepositoryRef) -> bool | None:
        """Whether the repository exists now (None: it cannot be told)."""
        try:
            self._collector.created_at(ref)
        except AwsError as exc:
            return False if exc.code == "RepositoryNotFoundException" else None
        return True


def export_document(inventory: RepositoryInventory, documents: dict[str, dict], row: RepositoryCost,
                    at: datetime) -> str:
    """A repository as it was before its deletion: enough to know what was there and to rebuild its images'
    manifests (the layers themselves go with the repository)."""
    ref = inventory.ref
    return json.dumps({
        "exported_at": iso(at), "repository": ref.name, "account_id": ref.account_id, "region": ref.region,
        "arn": ref.arn, "created_at": iso(inventory.created_at), "tags": inventory.tags,
        "lifecycle_policy": inventory.lifecycle_policy, "stored_bytes": row.stored_bytes,
        "monthly_cost_usd": round(row.monthly_cost_usd, 4),
        "images": [{"image_digest": i.digest, "image_tags": list(i.tags), "image_pushed_at": iso(i.pushed_at),
                    "last_recorded_pull_time": iso(i.last_pulled_at), "image_size_in_bytes": i.listed_bytes,
                    "media_type": i.media_type, "status": i.status} for i in inventory.images],
        "manifests": {digest: documents[digest] for digest in sorted(documents)},
    }, indent=1)
