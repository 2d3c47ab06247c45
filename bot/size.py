"""Why a repository is big: its pushes, the layers and bases it shares with the estate, and (from the image config
blobs, read once ever) the Dockerfile step of each layer."""
from __future__ import annotations

import logging

from .aws.ecr import EcrCollector
from .config import Settings
from .core.cost import GIB, reachable_manifests
from .core.models import RepositoryCost, ScanResult
from .core.size import EstateShare, SizeReport, configs_to_read, layer_steps, pushes, size_report
from .errors import AwsAccessDenied, AwsNotFound, BlobRefused, describe
from .progress import StepClock
from .scans import ref_of
from .store import Store

logger = logging.getLogger(__name__)


class SizeService:
    def __init__(self, store: Store, collector: EcrCollector, settings: Settings):
        self._store = store
        self._collector = collector
        self._settings = settings

    def size(self, scan: ScanResult, row: RepositoryCost, read_steps: bool = True) -> SizeReport:
        """Why ``row`` is big: from the scan's image lists and the manifest cache (every other repository of the scan is
        read too, one at a time, for the layers and bases they share). With ``read_steps``, the config blobs of its
        largest images give each layer's Dockerfile step: read once, ever, where ecr:GetDownloadUrlForLayer allows."""
        images, manifests = self._images_and_manifests(scan, row)
        found, unknown = pushes(images, manifests)
        share = EstateShare(row.arn, row.repository, found)
        for other in scan.repositories:
            if other.arn != row.arn:
                share.add(other.arn, other.repository, *self._images_and_manifests(scan, other))
        steps, notices = self.config_steps(row, configs_to_read(found)) if read_steps and found else ({}, [])
        return size_report(row, found, unknown, share, steps, price_per_gb_month=scan.price_per_gb_month,
                           large_image_bytes=int(self._settings.large_image_gb * GIB), now=scan.generated_at,
                           notices=notices)

    def _images_and_manifests(self, scan: ScanResult, row: RepositoryCost):
        images = (self._store.snapshot_images(scan.scan_id, row.arn) if scan.scan_id is not None else None) or []
        return images, reachable_manifests((i.digest for i in images), self._store.get_manifests)

    def config_steps(self, row: RepositoryCost, digests: list[str]) -> tuple[dict, list[str]]:
        """Config digest -> the Dockerfile step of each layer (None: unknown), from the cache or read from ECR, and
        notices. One blob that cannot be read never fails the answer; a refusal (no permission) or a failing endpoint
        stops the reading."""
        known = self._store.get_config_steps(digests)
        steps = {digest: found for digest, (found, _) in known.items()}
        notices: list[str] = []
        unread = [d for d in digests if d not in known]
        clock = StepClock("image configs being read (each once, ever)", len(unread))
        for digest in unread:
            clock.step()
            try:
                text = self._collector.config_blob(ref_of(row), digest)
            except BlobRefused as exc:  # immutable: it will be as big (or as wrong) next time
                self._store.put_config_steps(digest, None, str(exc))
                notices.append(str(exc))
                continue
            except AwsNotFound as exc:  # that blob alone is missing
                notices.append(f"config blob {digest} could not be read: {describe(exc)}")
                continue
            except AwsAccessDenied as exc:
                notices.append(f"created_by is unknown: the bot may not read image config blobs of "
                               f"{row.repository} (grant ecr:GetDownloadUrlForLayer; see the README's IAM "
                               f"permissions)")
                logger.info("config blob %s of %s: %s", digest, row.arn, exc)
                break
            except Exception as exc:  # noqa: BLE001 - the figures stand without the steps
                notices.append(f"created_by is unknown: the config blobs of {row.repository} could not be read "
                               f"({describe(exc)})")
                logger.info("config blob %s of %s: %s", digest, row.arn, exc)
                break
            parsed, problem = layer_steps(text)
            self._store.put_config_steps(digest, parsed, problem)
            steps[digest] = parsed
        return steps, notices
