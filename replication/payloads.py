"""Large payloads: the claim check of the AWS SNS/SQS extended clients.

An encoded event larger than SNS accepts is stored whole in S3 and the message
carries the extended client's pointer instead, with the reserved
``ExtendedPayloadSize`` attribute holding the original size in bytes::

    ["software.amazon.payloadoffloading.PayloadS3Pointer",
     {"s3BucketName": "bucket", "s3Key": "events/<owner>/<event id>.json"}]

so other tools that speak that format read these messages too.
"""

from __future__ import annotations

__all__ = [
    "EXTENDED_SIZE_ATTRIBUTE",
    "LEGACY_SIZE_ATTRIBUTE",
    "PAYLOAD_MAX_BYTES",
    "POINTER_CLASS",
    "POINTER_MAX_BYTES",
    "SNS_MAX_BYTES",
    "PayloadStore",
    "is_pointer",
    "make_pointer",
    "owner_prefix",
    "parse_pointer",
    "resolve_payload",
]

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
EXTENDED_SIZE_ATTRIBUTE = "ExtendedPayloadSize"
LEGACY_SIZE_ATTRIBUTE = "SQSLargePayloadSize"
SNS_MAX_BYTES = 256 * 1024
"""SNS's limit for one message (body and attributes) and for a whole PublishBatch."""


def owner_prefix(owner: str) -> str:
    """Where ``owner``'s relay offloads events: ``events/<owner>/<event id>.json``.

    One prefix per owner lets a template grant each relay writing and each
    consumer reading exactly its owners' objects.
    """
    return f"events/{owner}/"


def make_pointer(bucket: str, key: str) -> str:
    """The message body that points at ``s3://bucket/key``."""
    return json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}])


PAYLOAD_MAX_BYTES = 16 * 1024 * 1024
"""The largest offloaded payload a consumer reads (``REPLICATION_PAYLOAD_MAX_BYTES``)."""
POINTER_MAX_BYTES = 4096
"""A pointer is a couple of hundred bytes: a longer body is never read as one."""


def parse_pointer(body: str) -> tuple[str, str] | None:
    """``(bucket, key)`` if ``body`` is an extended-client pointer, else None."""
    if not body.startswith("[") or POINTER_CLASS not in body[:80] or len(body) > POINTER_MAX_BYTES:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if (
        isinstance(document, list)
        and len(document) == 2
        and document[0] == POINTER_CLASS
        and isinstance(document[1], dict)
        and isinstance(document[1].get("s3BucketName"), str)
        and isinstance(document[1].get("s3Key"), str)
    ):
        return document[1]["s3BucketName"], document[1]["s3Key"]
    return None


def is_pointer(body: str) -> bool:
    """Whether ``body`` is an extended-client pointer."""
    return parse_pointer(body) is not None


class PayloadStore:
    """Stores offloaded payloads in one S3 bucket (:func:`resolve_payload` reads them)."""

    def __init__(self, s3_client: S3Client, bucket: str, *, owner: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket
        # Consumers read only under the owner's prefix: every writer uses it.
        self.prefix = owner_prefix(owner)

    def offload(self, name: str, payload: str) -> str:
        """Store ``payload`` under ``name`` and return the pointer message body."""
        key = f"{self.prefix}{name}.json"
        self._s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=payload.encode(),
            ContentType="application/cloudevents+json",
        )
        return make_pointer(self.bucket, key)


def resolve_payload(body: str, s3_client: S3Client) -> str:
    """The real message: ``body`` itself, or what its pointer points at in S3."""
    pointer = parse_pointer(body)
    if pointer is None:
        return body
    bucket, key = pointer
    response = s3_client.get_object(Bucket=bucket, Key=key)
    data: bytes = response["Body"].read()
    return data.decode()
