"""The one place botocore's exceptions become the bot's (bot/errors.py's AwsError family), as httpx's
``map_exceptions`` does: every boto3 client the adapters make is wrapped by ``translating``, so its calls, its
paginators' pages and its waiters raise AwsAccessDenied, AwsNotFound, AwsThrottled ... carrying AWS's code and
message, the operation and the service. Nothing above the adapters sees botocore.

Which codes mean what is decided here, once (the IAM denial codes of every service the bot calls, the
throttling codes botocore retries, the not-found codes of ECR, S3, IAM, Glue ...).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from ..errors import (
    AwsAccessDenied,
    AwsCredentialsRefused,
    AwsError,
    AwsNoCredentials,
    AwsNoRegion,
    AwsNotFound,
    AwsThrottled,
    AwsUnreachable,
)

DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException",
                    "AuthorizationError", "Forbidden"})
CREDENTIALS_REFUSED = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken",
                                 "ExpiredTokenException", "UnrecognizedClientException", "InvalidAccessKeyId"})
THROTTLED = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
                       "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                       "RequestThrottled", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException"})
# a missing layer blob is as good as absent (ECR: "not associated with an image")
NOT_FOUND = frozenset({"NoSuchEntity", "NoSuchKey", "NoSuchBucket", "NotFound", "LayerInaccessibleException"})


def _kind(code: str) -> type[AwsError]:
    if code in DENIED:
        return AwsAccessDenied
    if code in CREDENTIALS_REFUSED:
        return AwsCredentialsRefused
    if code in THROTTLED:
        return AwsThrottled
    if code in NOT_FOUND or code.endswith(("NotFoundException", "NotFound")):
        return AwsNotFound
    return AwsError


def translate(exc: BaseException, service: str | None = None, operation: str | None = None) -> AwsError | None:
    """The AwsError for a botocore exception (None: not botocore's, let it pass)."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Error")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = error.get("Message")
        return _kind(code)(code, str(exc) if message is None else str(message), exc.operation_name or operation,
                           service, status)
    if not isinstance(exc, BotoCoreError):
        return None
    kind: type[AwsError] = AwsError
    if isinstance(exc, NoCredentialsError):
        kind = AwsNoCredentials
    elif isinstance(exc, NoRegionError):
        kind = AwsNoRegion
    elif isinstance(exc, (BotocoreConnectionError, HTTPClientError)):
        kind = AwsUnreachable
    return kind(exc.__class__.__name__, str(exc), operation, service)


@contextmanager
def unless(code: str) -> Iterator[None]:
    """Inside: the AWS error ``code`` (what is asked for is already so, or there is none) is swallowed."""
    try:
        yield
    except AwsError as exc:
        if exc.code != code:
            raise


@contextmanager
def translated(service: str | None = None, operation: str | None = None) -> Iterator[None]:
    """Inside: a botocore exception leaves as its AwsError (the original as its cause)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        found = translate(exc, service, operation)
        assert found is not None  # botocore's
        raise found from exc


def _calling(function: Callable, service: str | None, operation: str | None) -> Callable:
    def call(*args, **kwargs):
        with translated(service, operation):
            return function(*args, **kwargs)

    call.__name__ = getattr(function, "__name__", "call")
    call.__doc__ = getattr(function, "__doc__", None)
    return call


class _Translating:
    """A boto3 client, paginator, page iterator or waiter whose calls (and pages) raise AwsError."""

    def __init__(self, wrapped: Any, service: str | None, operation: str | None = None):
        self._wrapped, self._service, self._operation = wrapped, service, operation

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._wrapped, name)
        if name in ("meta", "exceptions") or not callable(found):
            return found
        operation = self._operation or _api_name(self._wrapped, name)
        if name in ("get_paginator", "get_waiter"):  # what they make calls AWS too
            return lambda *args, **kwargs: _Translating(_calling(found, self._service, operation)(*args, **kwargs),
                                                        self._service, _api_name(self._wrapped, args[0]) if args
                                                        else operation)
        if name in ("paginate", "search"):
            return lambda *args, **kwargs: _Translating(found(*args, **kwargs), self._service, operation)
        return _calling(found, self._service, operation)

    def __iter__(self) -> Iterator:
        iterator = iter(self._wrapped)
        while True:
            with translated(self._service, self._operation):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item

    def __repr__(self) -> str:
        return f"translating({self._wrapped!r})"


def _api_name(client: Any, method: str) -> str | None:
    mapping = getattr(getattr(client, "meta", None), "method_to_api_mapping", None)
    return mapping.get(method) if isinstance(mapping, dict) else None


def translating(client: Any) -> Any:
    """``client`` (a boto3 client) whose every call, paginator and waiter raises AwsError instead of botocore's
    exceptions. Already wrapped: as it is."""
    if isinstance(client, _Translating):
        return client
    service = getattr(getattr(getattr(client, "meta", None), "service_model", None), "service_name", None)
    return _Translating(client, service)
