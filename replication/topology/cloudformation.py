"""Render the topology as CloudFormation templates, one per AWS account.

Each template holds the account's share of the topology (topics of the
services living there, queues of its consumers) plus, per service, the relay
function (scheduled) of an owner and the apply function of a consumer with
its SQS event source mappings, DLQ alarms and least-privilege roles.

Names are rendered with ``${Prefix}`` (a template parameter) so one template
serves every environment; the region is the stack's.
"""

from __future__ import annotations

__all__ = ["RenderSettings", "render_templates"]

import json
from typing import Any

from replication.errors import ConfigurationError
from replication.manifest import Manifest
from replication.topology.cfn_common import (
    DEFAULT_ACCOUNT,
    SQS_SSE_SKIP,
    RenderSettings,
    arn,
    logical,
    sub,
)
from replication.topology.cfn_functions import (
    DATABASE_PARAMETERS,
    consumer_resources,
    relay_resources,
)
from replication.topology.cfn_storage import payload_bucket
from replication.topology.model import DLQ_RETENTION_SECONDS, QueueSpec, TopicSpec, build_topology
from replication.topology.naming import PREFIX_RE, TEMPLATE_PREFIX
from replication.topology.policies import (
    QUEUE_RETENTION_SECONDS,
    SNS_MANAGED_KEY,
    dlq_policy,
    queue_policy,
)


def render_templates(
    manifests: list[Manifest], settings: RenderSettings | None = None
) -> dict[str, dict[str, Any]]:
    """One template per account (``default`` for services that name none)."""
    settings = settings or RenderSettings()
    if settings.snapstart and settings.runtime in ("python3.9", "python3.10", "python3.11"):
        raise ConfigurationError(
            f"SnapStart runs Python 3.12 and newer, not {settings.runtime}: "
            "package and render for --python 3.12"
        )
    topology = build_topology(manifests, prefix=TEMPLATE_PREFIX)
    _check_logical_ids(topology.topics, topology.queues, manifests)
    accounts = sorted({m.account or DEFAULT_ACCOUNT for m in manifests})
    by_service = {m.service: m for m in manifests}
    _check_accounts(topology.queues, topology.topics, by_service)
    templates = {}
    for account in accounts:
        services = [m for m in manifests if (m.account or DEFAULT_ACCOUNT) == account]
        templates[account] = _template(
            topology.topics, topology.queues, services, by_service, settings
        )
    return templates


class _Resources(dict[str, Any]):
    """Resources by logical id; a second resource under one id is refused, never merged."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self:
            raise ConfigurationError(
                f"two resources would both be named {key} in the template: rename the "
                "service or entity whose name differs only in separators (. _ -)"
            )
        super().__setitem__(key, value)


def _check_logical_ids(
    topics: tuple[TopicSpec, ...], queues: tuple[QueueSpec, ...], manifests: list[Manifest]
) -> None:
    """Names that differ only in separators (``ab_c.d``, ``ab.c_d``) would share an id."""
    kinds = {
        "service": [(m.service, logical(m.service)) for m in manifests],
        "topic": [(t.name, logical(t.entity, f"v{t.version}")) for t in topics],
        "queue": [(q.name, logical(q.consumer, q.entity, f"v{q.version}")) for q in queues],
    }
    for kind, pairs in kinds.items():
        seen: dict[str, str] = {}
        for name, resource_id in pairs:
            other = seen.setdefault(resource_id, name)
            if other != name:
                raise ConfigurationError(
                    f"{kind}s {other} and {name} would share the CloudFormation id "
                    f"{resource_id}: their names differ only in separators; rename one"
                )


def _parameters(services: list[Manifest]) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "Prefix": {
            "Type": "String",
            "Default": "dev",
            "AllowedPattern": f"^{PREFIX_RE.pattern}$",
            "Description": "Environment prefix of every resource name",
        },
        "CodeBucket": {
            "Type": "String",
            "Description": "S3 bucket of the functions' artifacts (replication package)",
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Default": 30,
            "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 180, 365, 731, 1827, 3653],
            "Description": "Days the functions' logs are kept",
        },
        "AlarmTopicArn": {
            "Type": "String",
            "Default": "",
            "Description": "SNS topic the alarms notify (empty: alarms notify nobody)",
        },
        "SubnetIds": {
            "Type": "CommaDelimitedList",
            "Default": "",
            "Description": "Subnets of the functions (empty: outside any VPC)",
        },
        "SecurityGroupIds": {
            "Type": "CommaDelimitedList",
            "Default": "",
            "Description": "Security groups of the functions, with SubnetIds",
        },
        **DATABASE_PARAMETERS,
    }
    for manifest in services:
        for function, has in (("Relay", manifest.owns), ("Apply", manifest.mirrors)):
            if has:
                parameters[f"{logical(manifest.service)}{function}CodeKey"] = {
                    "Type": "String",
                    "Description": f"S3 key of {manifest.service}'s {function.lower()} "
                    f"artifact ({manifest.service}-{function.lower()}-<arch>-py<version>.zip)",
                }
        parameters[f"{logical(manifest.service)}DatabaseSecretArn"] = {
            "Type": "String",
            "AllowedPattern": "^arn:aws[a-z-]*:secretsmanager:.+$",
            "Description": f"ARN of the Secrets Manager secret of {manifest.service}'s database "
            "(RDS's format: engine, host, port, username, password, dbname)",
        }
    return parameters


def _check_accounts(
    queues: tuple[QueueSpec, ...], topics: tuple[TopicSpec, ...], by_service: dict[str, Manifest]
) -> None:
    """A consumer in a named account must know its owners' accounts: a topic's ARN names it."""
    owners = {t.name: t.owner for t in topics}
    problems = sorted(
        {
            f"{q.consumer} (account {consumer}) mirrors {q.entity} v{q.version}, whose owner "
            f"{owner} names no account: give {owner}'s manifest its account"
            for q in queues
            if (consumer := by_service[q.consumer].account) is not None
            and by_service[(owner := owners[q.topic])].account is None
        }
    )
    if problems:
        raise ConfigurationError("; ".join(problems))


def _template(
    topics: tuple[TopicSpec, ...],
    queues: tuple[QueueSpec, ...],
    services: list[Manifest],
    by_service: dict[str, Manifest],
    settings: RenderSettings,
) -> dict[str, Any]:
    names = {m.service for m in services}
    resources: dict[str, Any] = _Resources()
    local_topics = [t for t in topics if t.owner in names]
    local_queues = [q for q in queues if q.consumer in names]
    for topic in local_topics:
        owner_account = by_service[topic.owner].account
        subscribers: dict[str, list[str]] = {}
        for q in queues:
            account = by_service[q.consumer].account
            if q.topic == topic.name and account is not None and account != owner_account:
                subscribers.setdefault(account, []).append(q.name)
        _topic(resources, topic, subscribers)
    for queue in local_queues:
        _queue(resources, queue, topics, by_service, settings)
    if any(m.owns or m.mirrors for m in services):
        payload_bucket(resources)
    for manifest in services:
        if manifest.owns:
            relay_resources(
                resources,
                manifest,
                [t for t in local_topics if t.owner == manifest.service],
                settings,
            )
        if manifest.mirrors:
            owners = {d.contract.owner for d in manifest.mirrors}
            accounts = {
                owner: account
                for owner in owners
                if owner in by_service
                and (account := by_service[owner].account) is not None
                and account != manifest.account
            }
            consumer_resources(
                resources,
                manifest,
                [q for q in local_queues if q.consumer == manifest.service],
                settings,
                accounts,
            )
    outputs = {
        f"{logical(t.entity, f'v{t.version}')}TopicArn": {
            "Value": {"Ref": logical(t.entity, f"v{t.version}", "Topic")}
        }
        for t in local_topics
    }
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Replication topology: topics, queues, DLQs, relay and apply functions "
        f"of {', '.join(sorted(names))} (rendered by replication; do not edit)",
        "Parameters": _parameters(services),
        "Conditions": {
            "InVpc": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": [",", {"Ref": "SubnetIds"}]}, ""]}]},
            "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]},
        },
        "Resources": dict(resources),
    }
    if outputs:
        template["Outputs"] = outputs
    return template


def _topic(resources: dict[str, Any], topic: TopicSpec, subscribers: dict[str, list[str]]) -> None:
    """The topic and its policy: the owner's relay publishes; each consumer account in
    ``subscribers`` (account -> its queue names) may subscribe those queues, and only them."""
    topic_id = logical(topic.entity, f"v{topic.version}", "Topic")
    properties: dict[str, Any] = {
        "TopicName": sub(topic.name),
        "KmsMasterKeyId": SNS_MANAGED_KEY,
    }
    if topic.fifo:
        properties["FifoTopic"] = True
    resources[topic_id] = {"Type": "AWS::SNS::Topic", "Properties": properties}
    role = f"{logical(topic.owner)}RelayRole"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "OwnerPublishes",
            "Effect": "Allow",
            "Principal": {"AWS": arn(role)},
            "Action": "sns:Publish",
            "Resource": {"Ref": topic_id},
        }
    ]
    for account, names in sorted(subscribers.items()):
        # Not the whole account: any principal there could attach a queue of its own
        # and read every event. Each consumer account subscribes its own queues only.
        endpoints = [
            sub(f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:{account}:{name}")
            for name in sorted(names)
        ]
        statements.append(
            {
                "Sid": f"Account{account}SubscribesItsQueues",
                "Effect": "Allow",
                "Principal": {"AWS": sub(f"arn:${{AWS::Partition}}:iam::{account}:root")},
                "Action": "sns:Subscribe",
                "Resource": {"Ref": topic_id},
                "Condition": {"StringEquals": {"sns:Protocol": "sqs", "sns:Endpoint": endpoints}},
            }
        )
    resources[f"{topic_id}Policy"] = {
        "Type": "AWS::SNS::TopicPolicy",
        "Properties": {
            "Topics": [{"Ref": topic_id}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    }


def _queue(
    resources: dict[str, Any],
    queue: QueueSpec,
    topics: tuple[TopicSpec, ...],
    by_service: dict[str, Manifest],
    settings: RenderSettings,
) -> None:
    base = logical(queue.consumer, queue.entity, f"v{queue.version}")
    topic = next(t for t in topics if t.name == queue.topic)
    owner_account = by_service[topic.owner].account
    topic_logical = logical(topic.entity, f"v{topic.version}", "Topic")
    local_topic = owner_account == by_service[queue.consumer].account
    topic_ref: Any = (
        {"Ref": topic_logical}
        if local_topic
        else sub(f"arn:${{AWS::Partition}}:sns:${{AWS::Region}}:{owner_account}:{topic.name}")
    )
    fifo: dict[str, Any] = {"FifoQueue": True} if queue.fifo else {}
    resources[f"{base}Dlq"] = {
        "Type": "AWS::SQS::Queue",
        "Metadata": {"checkov": {"skip": [SQS_SSE_SKIP]}},
        "Properties": {
            "QueueName": sub(queue.dlq),
            "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
            **fifo,
        },
    }
    resources[f"{base}Queue"] = {
        "Type": "AWS::SQS::Queue",
        "Metadata": {"checkov": {"skip": [SQS_SSE_SKIP]}},
        "Properties": {
            "QueueName": sub(queue.name),
            "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": QUEUE_RETENTION_SECONDS,
            # AWS: at least the function timeout; it recommends six times.
            "VisibilityTimeout": 6 * settings.apply_timeout,
            "RedrivePolicy": {
                "deadLetterTargetArn": arn(f"{base}Dlq"),
                "maxReceiveCount": queue.max_receive_count,
            },
            **fifo,
        },
    }
    operators = by_service[queue.consumer].operator_roles
    resources[f"{base}QueuePolicy"] = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": f"{base}Queue"}],
            "PolicyDocument": queue_policy(arn(f"{base}Queue"), topic_ref, operators),
        },
    }
    apply_role = arn(f"{logical(queue.consumer)}ApplyRole")
    resources[f"{base}DlqPolicy"] = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": f"{base}Dlq"}],
            "PolicyDocument": dlq_policy(arn(f"{base}Dlq"), apply_role, operators),
        },
    }
    subscription: dict[str, Any] = {
        "Protocol": "sqs",
        "TopicArn": topic_ref,
        "Endpoint": arn(f"{base}Queue"),
        "RawMessageDelivery": True,
    }
    if queue.filter_policy is not None:
        subscription["FilterPolicy"] = json.loads(json.dumps(queue.filter_policy))
    resources[f"{base}Subscription"] = {
        "Type": "AWS::SNS::Subscription",
        "Properties": subscription,
    }
