"""Shared pieces of the CloudFormation rendering: settings, names, references."""

from __future__ import annotations

__all__ = [
    "APPLY_HANDLER",
    "DEFAULT_ACCOUNT",
    "FUNCTION_SKIPS",
    "RELAY_HANDLER",
    "SQS_SSE_SKIP",
    "RenderSettings",
    "arn",
    "logical",
    "sub",
]

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_ACCOUNT = "default"

# Security scanner (checkov) findings that do not apply, each with its reason; they are
# written into the template as resource metadata and listed in docs/deploying.md.
SQS_SSE_SKIP = {
    "id": "CKV_AWS_27",
    "comment": "Encrypted with SSE-SQS (SqsManagedSseEnabled). SNS cannot deliver to a "
    "queue encrypted with the AWS-managed KMS key, and SSE-SQS needs no key policy.",
}
FUNCTION_SKIPS = [
    {
        "id": "CKV_AWS_116",
        "comment": "No function DLQ: the apply function is invoked synchronously by its SQS "
        "event source mapping, whose queue has a redrive DLQ; the relay runs on a schedule "
        "and its next run retries.",
    },
    {
        "id": "CKV_AWS_117",
        "comment": "VPC is optional: set the SubnetIds and SecurityGroupIds parameters to "
        "run inside the VPC of the database.",
    },
    {
        "id": "CKV_AWS_173",
        "comment": "Environment variables hold no secret, only names and the ARN of the "
        "Secrets Manager secret.",
    },
]
RELAY_HANDLER = "replication.outbox.function.lambda_handler"
APPLY_HANDLER = "replication.consumer.handler.lambda_handler"


@dataclass(frozen=True)
class RenderSettings:
    """Function settings shared by every rendered template."""

    runtime: str = "python3.12"
    architecture: str = "x86_64"
    """Lambda's ``x86_64`` or ``arm64``: what ``replication package --arch`` built for."""
    apply_timeout: int = 30
    relay_timeout: int = 75
    """Above the schedule's minute: a following relay hands over to the next run."""
    relay_mode: str = "follow"
    """``follow``: publish within a second of each commit; ``drain``: at each schedule."""
    relay_memory: int = 256
    memory: int = 512
    batch_size: int = 10
    batching_window: int = 0
    max_concurrency: int = 5
    relay_schedule: str = "rate(1 minute)"
    provisioned_concurrency: int = 0
    """Apply functions kept initialised (0: none); served through a ``live`` alias."""
    snapstart: bool = False
    """SnapStart on published versions of the apply functions (Python 3.12+)."""
    keep_warm: str | None = None
    """Schedule (e.g. ``rate(5 minutes)``) pinging apply functions: the cheap alternative."""
    dlq_age_alarm_seconds: int = 300
    outbox_age_alarm_seconds: int = 120


def logical(*parts: str) -> str:
    return "".join(re.sub(r"[^A-Za-z0-9]", " ", p).title().replace(" ", "") for p in parts)


def sub(name: str) -> dict[str, str]:
    return {"Fn::Sub": name}


def arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}
