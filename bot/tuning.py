"""Tuning the base policy for one repository: the form's starting values, what the tuned policy would do (fast
enough to follow a person typing), and adopting it (through ``PolicyChanges``, recorded as "tuned")."""
from __future__ import annotations

from .adoption import PolicyChanges, PolicyPreview, compact
from .config import Settings
from .core.models import RepositoryCost, ScanResult
from .core.tuning import Tuning, tuned_policy, tuning_of
from .detail import DetailService
from .gate import Actor, Change
from .scans import ScanService, ref_of


class TuningService:
    def __init__(self, detail: DetailService, scans: ScanService, changes: PolicyChanges, settings: Settings):
        self._detail = detail
        self._scans = scans
        self._changes = changes
        self._settings = settings

    def base_tuning(self) -> Tuning:
        """The form's starting values: the base policy's own numbers."""
        return tuning_of(self._settings.base_policy)

    def tuned_preview(self, row: RepositoryCost, tuning: Tuning, scan: ScanResult | None = None) -> PolicyPreview:
        """What the tuned policy would do, in-use images kept: from the scan's image list (fast enough to follow
        a person typing)."""
        return self._detail.preview(row, compact(tuned_policy(tuning)), scan=scan or self._scans.latest())

    def adopt_tuned(self, row: RepositoryCost, actor: Actor, tuning: Tuning, despite_partial: bool = False,
                    despite_in_use: bool = False) -> Change:
        return self._changes.adopt(ref_of(row), compact(tuned_policy(tuning)), actor, despite_partial=despite_partial,
                                   tuned=True, despite_in_use=despite_in_use)
