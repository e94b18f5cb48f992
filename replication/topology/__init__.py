"""Topology: the SNS topics, SQS queues and DLQs derived from the manifests."""

from replication.topology.naming import dlq_name, queue_name, topic_arn, topic_name

__all__ = ["dlq_name", "queue_name", "topic_arn", "topic_name"]
