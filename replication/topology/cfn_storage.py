"""CloudFormation resources that hold data beside the functions: the payload bucket, log groups.

The payload bucket keeps events over SNS's 256 KiB limit (the claim check):
encrypted, TLS only, public access blocked, each owner's relay writing under
``events/<owner>/`` and each consumer reading only its owners' prefixes.
Objects expire once no message can still point at them: a queue's retention
plus its DLQ's (a dead-lettered copy is a new message), and a day.
"""

from __future__ import annotations

__all__ = [
    "PAYLOAD_BUCKET",
    "PAYLOAD_EXPIRY_DAYS",
    "log_group",
    "payload_bucket",
    "payload_statement",
]

import math
from typing import Any

from replication.payloads import owner_prefix
from replication.topology.cfn_common import sub
from replication.topology.model import DLQ_RETENTION_SECONDS
from replication.topology.policies import QUEUE_RETENTION_SECONDS

PAYLOAD_BUCKET = "PayloadBucket"
PAYLOAD_EXPIRY_DAYS = math.ceil((QUEUE_RETENTION_SECONDS + DLQ_RETENTION_SECONDS) / 86400) + 1
_LOG_KMS_SKIP = {
    "id": "CKV_AWS_158",
    "comment": "Logs are encrypted by CloudWatch Logs' own key; the functions log no pii "
    "(masked) and no secret.",
}
_BUCKET_SKIPS = [
    {
        "id": "CKV_AWS_18",
        "comment": "Access logging needs a second bucket per account; CloudTrail data events "
        "cover object access where required.",
    },
    {
        "id": "CKV_AWS_21",
        "comment": "Objects are written once under their event id and expire; versioning would "
        "keep expired events.",
    },
]


def payload_bucket(resources: dict[str, Any]) -> None:
    """The encrypted, private, TLS-only bucket of offloaded events, expiring them."""
    resources[PAYLOAD_BUCKET] = {
        "Type": "AWS::S3::Bucket",
        "Metadata": {"checkov": {"skip": _BUCKET_SKIPS}},
        "Properties": {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "expire-offloaded-events",
                        "Status": "Enabled",
                        "ExpirationInDays": PAYLOAD_EXPIRY_DAYS,
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
        },
    }
    bucket_arn = {"Fn::GetAtt": [PAYLOAD_BUCKET, "Arn"]}
    resources[f"{PAYLOAD_BUCKET}Policy"] = {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": PAYLOAD_BUCKET},
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [bucket_arn, {"Fn::Sub": "${PayloadBucket.Arn}/*"}],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    }


def payload_statement(action: str, owners: list[str]) -> dict[str, Any]:
    """Allow ``action`` on the objects under the payload prefixes of ``owners`` only."""
    return {
        "Effect": "Allow",
        "Action": action,
        "Resource": [
            {"Fn::Sub": f"${{{PAYLOAD_BUCKET}.Arn}}/{owner_prefix(owner)}*"}
            for owner in sorted(set(owners))
        ],
    }


def log_group(resources: dict[str, Any], resource_id: str, function_name: str) -> str:
    """The function's log group with the stack's retention; returns its logical id."""
    resources[resource_id] = {
        "Type": "AWS::Logs::LogGroup",
        "Metadata": {"checkov": {"skip": [_LOG_KMS_SKIP]}},
        "Properties": {
            "LogGroupName": sub(f"/aws/lambda/{function_name}"),
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        },
    }
    return resource_id
