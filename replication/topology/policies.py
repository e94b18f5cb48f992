"""Resource policies and attributes of the topology, as plain JSON-able data.

Security defaults (ARCHITECTURE section 5): topics and queues encrypted at
rest; a queue admits messages only from its topic (``aws:SourceArn``); a
topic admits publishing only from its owner's relay role.
"""

from __future__ import annotations

__all__ = [
    "SNS_MANAGED_KEY",
    "dlq_attributes",
    "publisher_role_arn",
    "queue_attributes",
    "queue_policy",
    "subscription_attributes",
    "topic_attributes",
    "topic_policy",
]

import json
from typing import Any

from replication.topology.model import DLQ_RETENTION_SECONDS, QueueSpec, TopicSpec

SNS_MANAGED_KEY = "alias/aws/sns"
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
VISIBILITY_TIMEOUT_SECONDS = 180  # 6x a 30 s apply function, as AWS recommends


def publisher_role_arn(prefix: str, service: str, account: str, partition: str = "aws") -> str:
    """The role the owner's relay publishes with."""
    return f"arn:{partition}:iam::{account}:role/{prefix}-{service}-relay"


def topic_policy(topic_arn: str, publisher_role: str) -> dict[str, Any]:
    """Only the owner's relay role may publish; only the topic's account may subscribe."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerPublishes",
                "Effect": "Allow",
                "Principal": {"AWS": publisher_role},
                "Action": "sns:Publish",
                "Resource": topic_arn,
            }
        ],
    }


def queue_policy(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """Only the queue's topic may send to it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TopicDelivers",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }


def topic_attributes(topic: TopicSpec, topic_arn: str, publisher_role: str) -> dict[str, str]:
    """The topic's attributes as SNS takes them."""
    attributes = {
        "KmsMasterKeyId": SNS_MANAGED_KEY,
        "Policy": json.dumps(topic_policy(topic_arn, publisher_role), sort_keys=True),
    }
    if topic.fifo:
        attributes["FifoTopic"] = "true"
    return attributes


def queue_attributes(
    queue: QueueSpec, queue_arn: str, topic_arn: str, dlq_arn: str
) -> dict[str, str]:
    """The queue's attributes as SQS takes them."""
    attributes = {
        "SqsManagedSseEnabled": "true",
        "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receive_count},
            sort_keys=True,
        ),
        "Policy": json.dumps(queue_policy(queue_arn, topic_arn), sort_keys=True),
    }
    if queue.fifo:
        attributes["FifoQueue"] = "true"
    return attributes


def dlq_attributes(queue: QueueSpec) -> dict[str, str]:
    """The dead-letter queue's attributes: encrypted, 14 days' retention."""
    attributes = {
        "SqsManagedSseEnabled": "true",
        "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS),
    }
    if queue.fifo:
        attributes["FifoQueue"] = "true"
    return attributes


def subscription_attributes(queue: QueueSpec) -> dict[str, str]:
    """Raw delivery, and the filter policy when one is declared."""
    attributes = {"RawMessageDelivery": "true"}
    if queue.filter_policy is not None:
        attributes["FilterPolicy"] = json.dumps(queue.filter_policy, sort_keys=True)
    return attributes
