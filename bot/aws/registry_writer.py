"""Changes the registry, one repository at a time: its lifecycle policy, its tags, image tags (the pins), and
deletions of images and of the repository itself. Only the services that own those changes call it (bot/adoption.py,
bot/sweep.py), after their safety checks; raises the AwsError family.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..core.cost import ACCEPTED_MEDIA_TYPES
from ..core.models import RepositoryRef
from .accounts import Accounts
from .errors import unless

DELETES_PER_CALL = 100  # BatchDeleteImage's limit


class RegistryWriter:
    """Writes through the ECR client of each repository's account and region."""

    def __init__(self, accounts: Accounts):
        self._accounts = accounts

    def put_lifecycle_policy(self, ref: RepositoryRef, text: str) -> None:
        self._accounts.client_for(ref).put_lifecycle_policy(repositoryName=ref.name, registryId=ref.account_id,
                                                            lifecyclePolicyText=text)

    def delete_lifecycle_policy(self, ref: RepositoryRef) -> None:
        client = self._accounts.client_for(ref)
        # LifecyclePolicyNotFound: already none, that is what was asked for
        with unless("LifecyclePolicyNotFoundException"):
            client.delete_lifecycle_policy(repositoryName=ref.name, registryId=ref.account_id)

    def add_tag(self, ref: RepositoryRef, digest: str, tag: str) -> None:
        """Puts ``tag`` on the image ``digest`` (its exact manifest again: the digest stays the same)."""
        client = self._accounts.client_for(ref)
        found = client.batch_get_image(repositoryName=ref.name, registryId=ref.account_id,
                                       imageIds=[{"imageDigest": digest}], acceptedMediaTypes=ACCEPTED_MEDIA_TYPES)
        if not found.get("images"):
            failure = (found.get("failures") or [{}])[0]
            raise LookupError(f"image {digest} could not be read: {failure.get('failureCode')}: "
                              f"{failure.get('failureReason')}")
        image = found["images"][0]
        # ImageAlreadyExists: the tag is already there, what was asked for
        with unless("ImageAlreadyExistsException"):
            client.put_image(repositoryName=ref.name, registryId=ref.account_id, imageManifest=image["imageManifest"],
                             imageManifestMediaType=image.get("imageManifestMediaType"), imageTag=tag,
                             imageDigest=digest)

    def remove_tag(self, ref: RepositoryRef, tag: str) -> None:
        """Removes ``tag``. When it is the image's last tag, ECR deletes the image: callers decide that."""
        answer = self._accounts.client_for(ref).batch_delete_image(repositoryName=ref.name, registryId=ref.account_id,
                                                                   imageIds=[{"imageTag": tag}])
        failures = [f for f in answer.get("failures", []) if f.get("failureCode") != "ImageNotFound"]
        if failures:  # ECR answers 200 and lists what it did not delete (e.g. a child its index references)
            raise LookupError(f"{failures[0].get('failureCode')}: {failures[0].get('failureReason')}")

    def delete_images(self, ref: RepositoryRef, digests: Sequence[str]) -> dict[str, str]:
        """BatchDeleteImage by digest, 100 per request: digest -> why AWS did not delete it (absent: deleted)."""
        client, failed = self._accounts.client_for(ref), {}
        for start in range(0, len(digests), DELETES_PER_CALL):
            response = client.batch_delete_image(
                repositoryName=ref.name, registryId=ref.account_id,
                imageIds=[{"imageDigest": d} for d in digests[start:start + DELETES_PER_CALL]])
            for failure in response.get("failures", []):
                digest = failure.get("imageId", {}).get("imageDigest", "?")
                if failure.get("failureCode") != "ImageNotFound":  # already gone: what was asked for
                    failed[digest] = f"{failure.get('failureCode')}: {failure.get('failureReason')}"
        return failed

    def tag_repository(self, ref: RepositoryRef, key: str, value: str) -> None:
        self._accounts.client_for(ref).tag_resource(resourceArn=ref.arn, tags=[{"Key": key, "Value": value}])

    def untag_repository(self, ref: RepositoryRef, key: str) -> None:
        self._accounts.client_for(ref).untag_resource(resourceArn=ref.arn, tagKeys=[key])

    def delete_repository(self, ref: RepositoryRef) -> None:
        """Deletes the repository and every image in it (force): callers export it first."""
        self._accounts.client_for(ref).delete_repository(repositoryName=ref.name, registryId=ref.account_id,
                                                         force=True)
