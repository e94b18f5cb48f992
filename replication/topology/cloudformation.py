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
import re
from dataclasses import dataclass
from typing import Any

from replication.manifest import Manifest
from replication.topology.model import DLQ_RETENTION_SECONDS, QueueSpec, TopicSpec, build_topology
from replication.topology.policies import QUEUE_RETENTION_SECONDS, SNS_MANAGED_KEY

DEFAULT_ACCOUNT = "default"

# Security scanner (checkov) findings that do not apply, each with its reason; they are
# written into the template as resource metadata and listed in docs/deploying.md.
_SQS_SSE = {
    "id": "CKV_AWS_27",
    "comment": "Encrypted with SSE-SQS (SqsManagedSseEnabled). SNS cannot deliver to a "
    "queue encrypted with the AWS-managed KMS key, and SSE-SQS needs no key policy.",
}
_FUNCTION_SKIPS = [
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
RELAY_HANDLER = "replication.outbox.runner.lambda_handler"
APPLY_HANDLER = "replication.consumer.handler.lambda_handler"


@dataclass(frozen=True)
class RenderSettings:
    """Function settings shared by every rendered template."""

    runtime: str = "python3.12"
    apply_timeout: int = 30
    relay_timeout: int = 60
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


def _logical(*parts: str) -> str:
    return "".join(re.sub(r"[^A-Za-z0-9]", " ", p).title().replace(" ", "") for p in parts)


def _sub(name: str) -> dict[str, str]:
    return {"Fn::Sub": name}


def _arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}


def render_templates(
    manifests: list[Manifest], settings: RenderSettings | None = None
) -> dict[str, dict[str, Any]]:
    """One template per account (``default`` for services that name none)."""
    settings = settings or RenderSettings()
    topology = build_topology(manifests, prefix="${Prefix}")
    accounts = sorted({m.account or DEFAULT_ACCOUNT for m in manifests})
    by_service = {m.service: m for m in manifests}
    templates = {}
    for account in accounts:
        services = [m for m in manifests if (m.account or DEFAULT_ACCOUNT) == account]
        templates[account] = _template(
            topology.topics, topology.queues, services, by_service, settings
        )
    return templates


def _parameters(services: list[Manifest]) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "Prefix": {
            "Type": "String",
            "Default": "dev",
            "AllowedPattern": "^[a-z][a-z0-9-]{0,19}$",
            "Description": "Environment prefix of every resource name",
        },
        "CodeBucket": {"Type": "String", "Description": "S3 bucket of the function package"},
        "CodeKey": {"Type": "String", "Description": "S3 key of the function package"},
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
    }
    for manifest in services:
        parameters[f"{_logical(manifest.service)}DatabaseSecretArn"] = {
            "Type": "String",
            "AllowedPattern": "^arn:aws[a-z-]*:secretsmanager:.+$",
            "Description": f"Secrets Manager secret with {manifest.service}'s database URL",
        }
    return parameters


def _template(
    topics: tuple[TopicSpec, ...],
    queues: tuple[QueueSpec, ...],
    services: list[Manifest],
    by_service: dict[str, Manifest],
    settings: RenderSettings,
) -> dict[str, Any]:
    names = {m.service for m in services}
    resources: dict[str, Any] = {}
    local_topics = [t for t in topics if t.owner in names]
    local_queues = [q for q in queues if q.consumer in names]
    for topic in local_topics:
        subscribers = sorted(
            {
                account
                for q in queues
                if q.topic == topic.name
                and (account := by_service[q.consumer].account) is not None
                and account != by_service[topic.owner].account
            }
        )
        _topic(resources, topic, subscribers)
    for queue in local_queues:
        _queue(resources, queue, topics, by_service, settings)
    for manifest in services:
        if manifest.owns:
            _relay(
                resources,
                manifest,
                [t for t in local_topics if t.owner == manifest.service],
                settings,
            )
        if manifest.mirrors:
            _consumer(
                resources,
                manifest,
                [q for q in local_queues if q.consumer == manifest.service],
                settings,
            )
    outputs = {
        f"{_logical(t.entity, f'v{t.version}')}TopicArn": {
            "Value": {"Ref": _logical(t.entity, f"v{t.version}", "Topic")}
        }
        for t in local_topics
    }
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Replication topology: topics, queues, DLQs, relay and apply functions "
        f"of {', '.join(sorted(names))} (rendered by replication; do not edit)",
        "Parameters": _parameters(services),
        "Conditions": {
            "InVpc": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": [",", {"Ref": "SubnetIds"}]}, ""]}]}
        },
        "Resources": resources,
    }
    if outputs:
        template["Outputs"] = outputs
    return template


def _topic(resources: dict[str, Any], topic: TopicSpec, subscriber_accounts: list[str]) -> None:
    logical = _logical(topic.entity, f"v{topic.version}", "Topic")
    properties: dict[str, Any] = {
        "TopicName": _sub(topic.name),
        "KmsMasterKeyId": SNS_MANAGED_KEY,
    }
    if topic.fifo:
        properties["FifoTopic"] = True
    resources[logical] = {"Type": "AWS::SNS::Topic", "Properties": properties}
    role = f"{_logical(topic.owner)}RelayRole"
    resources[f"{logical}Policy"] = {
        "Type": "AWS::SNS::TopicPolicy",
        "Properties": {
            "Topics": [{"Ref": logical}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "OwnerPublishes",
                        "Effect": "Allow",
                        "Principal": {"AWS": _arn(role)},
                        "Action": "sns:Publish",
                        "Resource": {"Ref": logical},
                    },
                    *(
                        [
                            {
                                # Consumers in other accounts subscribe their SQS queues.
                                "Sid": "ConsumerAccountsSubscribe",
                                "Effect": "Allow",
                                "Principal": {
                                    "AWS": [
                                        _sub(f"arn:${{AWS::Partition}}:iam::{a}:root")
                                        for a in subscriber_accounts
                                    ]
                                },
                                "Action": "sns:Subscribe",
                                "Resource": {"Ref": logical},
                                "Condition": {"StringEquals": {"sns:Protocol": "sqs"}},
                            }
                        ]
                        if subscriber_accounts
                        else []
                    ),
                ],
            },
        },
    }


def _queue(
    resources: dict[str, Any],
    queue: QueueSpec,
    topics: tuple[TopicSpec, ...],
    by_service: dict[str, Manifest],
    settings: RenderSettings,
) -> None:
    base = _logical(queue.consumer, queue.entity, f"v{queue.version}")
    topic = next(t for t in topics if t.name == queue.topic)
    owner_account = by_service[topic.owner].account
    topic_logical = _logical(topic.entity, f"v{topic.version}", "Topic")
    local_topic = owner_account == by_service[queue.consumer].account
    topic_ref: Any = (
        {"Ref": topic_logical}
        if local_topic
        else _sub(f"arn:${{AWS::Partition}}:sns:${{AWS::Region}}:{owner_account}:{topic.name}")
    )
    fifo: dict[str, Any] = {"FifoQueue": True} if queue.fifo else {}
    resources[f"{base}Dlq"] = {
        "Type": "AWS::SQS::Queue",
        "Metadata": {"checkov": {"skip": [_SQS_SSE]}},
        "Properties": {
            "QueueName": _sub(queue.dlq),
            "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
            **fifo,
        },
    }
    resources[f"{base}Queue"] = {
        "Type": "AWS::SQS::Queue",
        "Metadata": {"checkov": {"skip": [_SQS_SSE]}},
        "Properties": {
            "QueueName": _sub(queue.name),
            "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": QUEUE_RETENTION_SECONDS,
            # AWS: at least the function timeout; it recommends six times.
            "VisibilityTimeout": 6 * settings.apply_timeout,
            "RedrivePolicy": {
                "deadLetterTargetArn": _arn(f"{base}Dlq"),
                "maxReceiveCount": queue.max_receive_count,
            },
            **fifo,
        },
    }
    resources[f"{base}QueuePolicy"] = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": f"{base}Queue"}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TopicDelivers",
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": _arn(f"{base}Queue"),
                        "Condition": {"ArnEquals": {"aws:SourceArn": topic_ref}},
                    }
                ],
            },
        },
    }
    subscription: dict[str, Any] = {
        "Protocol": "sqs",
        "TopicArn": topic_ref,
        "Endpoint": _arn(f"{base}Queue"),
        "RawMessageDelivery": True,
    }
    if queue.filter_policy is not None:
        subscription["FilterPolicy"] = json.loads(json.dumps(queue.filter_policy))
    resources[f"{base}Subscription"] = {
        "Type": "AWS::SNS::Subscription",
        "Properties": subscription,
    }


def _role(
    resources: dict[str, Any], logical: str, statements: list[dict[str, Any]], service: str
) -> None:
    secret = {"Ref": f"{_logical(service)}DatabaseSecretArn"}
    log_group = _sub(
        f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/${{Prefix}}-{service}-*"
    )
    resources[logical] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            # Inside a VPC, Lambda needs to manage its network interfaces.
            "ManagedPolicyArns": {
                "Fn::If": [
                    "InVpc",
                    [
                        _sub(
                            "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                            "AWSLambdaVPCAccessExecutionRole"
                        )
                    ],
                    {"Ref": "AWS::NoValue"},
                ]
            },
            "Policies": [
                {
                    "PolicyName": "least-privilege",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            *statements,
                            {
                                "Effect": "Allow",
                                "Action": "secretsmanager:GetSecretValue",
                                "Resource": secret,
                            },
                            {
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                "Resource": log_group,
                            },
                        ],
                    },
                }
            ],
        },
    }


def _function(
    resources: dict[str, Any],
    logical: str,
    name: str,
    handler: str,
    role: str,
    timeout: int,
    environment: dict[str, Any],
    settings: RenderSettings,
    concurrency: int,
) -> None:
    resources[logical] = {
        "Type": "AWS::Lambda::Function",
        "Metadata": {"checkov": {"skip": _FUNCTION_SKIPS}},
        "Properties": {
            "ReservedConcurrentExecutions": concurrency,
            "VpcConfig": {
                "Fn::If": [
                    "InVpc",
                    {
                        "SubnetIds": {"Ref": "SubnetIds"},
                        "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
                    },
                    {"Ref": "AWS::NoValue"},
                ]
            },
            "FunctionName": _sub(name),
            "Runtime": settings.runtime,
            "Handler": handler,
            "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
            "Role": _arn(role),
            "Timeout": timeout,
            "MemorySize": settings.memory,
            "Environment": {"Variables": environment},
        },
    }


def _environment(manifest: Manifest) -> dict[str, Any]:
    """What a service's functions are told: the manifest, the prefix, the secret's ARN."""
    return {
        "REPLICATION_MANIFEST": f"{manifest.service}/replication.yaml",
        "REPLICATION_PREFIX": {"Ref": "Prefix"},
        "REPLICATION_DATABASE_SECRET_ARN": {
            "Ref": f"{_logical(manifest.service)}DatabaseSecretArn"
        },
    }


def _relay(
    resources: dict[str, Any], manifest: Manifest, topics: list[TopicSpec], settings: RenderSettings
) -> None:
    service = _logical(manifest.service)
    role = f"{service}RelayRole"
    publish = {
        "Effect": "Allow",
        "Action": "sns:Publish",
        "Resource": [{"Ref": _logical(t.entity, f"v{t.version}", "Topic")} for t in topics],
    }
    _role(resources, role, [publish], manifest.service)
    # The relay role's name is fixed so that topic policies in other accounts can name it.
    resources[role]["Properties"]["RoleName"] = _sub(f"${{Prefix}}-{manifest.service}-relay")
    function = f"{service}RelayFunction"
    _function(
        resources,
        function,
        f"${{Prefix}}-{manifest.service}-relay",
        RELAY_HANDLER,
        role,
        settings.relay_timeout,
        _environment(manifest),
        settings,
        concurrency=2,  # the scheduled run, and one overlapping a slow run
    )
    resources[f"{service}RelaySchedule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "ScheduleExpression": settings.relay_schedule,
            "State": "ENABLED",
            "Targets": [{"Id": "relay", "Arn": _arn(function)}],
        },
    }
    resources[f"{service}RelaySchedulePermission"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": function},
            "Principal": "events.amazonaws.com",
            "SourceArn": _arn(f"{service}RelaySchedule"),
        },
    }


def _consumer(
    resources: dict[str, Any], manifest: Manifest, queues: list[QueueSpec], settings: RenderSettings
) -> None:
    service = _logical(manifest.service)
    role = f"{service}ApplyRole"
    bases = [_logical(q.consumer, q.entity, f"v{q.version}") for q in queues]
    statements = [
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            "Resource": [_arn(f"{b}Queue") for b in bases],
        },
        {
            # Permanent failures go to the DLQ at once, with their reason.
            "Effect": "Allow",
            "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes"],
            "Resource": [_arn(f"{b}Dlq") for b in bases],
        },
    ]
    _role(resources, role, statements, manifest.service)
    function = f"{service}ApplyFunction"
    _function(
        resources,
        function,
        f"${{Prefix}}-{manifest.service}-apply",
        APPLY_HANDLER,
        role,
        settings.apply_timeout,
        _environment(manifest),
        settings,
        concurrency=settings.max_concurrency * len(queues),
    )
    target: Any = {"Ref": function}
    if settings.provisioned_concurrency or settings.snapstart:
        target = _published(resources, function, settings)
    if settings.keep_warm:
        _keep_warm(resources, function, target, settings.keep_warm)
    for queue, base in zip(queues, bases, strict=True):
        mapping: dict[str, Any] = {
            "EventSourceArn": _arn(f"{base}Queue"),
            "FunctionName": target,
            "BatchSize": settings.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": settings.max_concurrency},
        }
        if not queue.fifo:
            mapping["MaximumBatchingWindowInSeconds"] = settings.batching_window
        resources[f"{base}Mapping"] = {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": mapping,
        }
        resources[f"{base}DlqDepthAlarm"] = _alarm(
            f"{base}Dlq", "ApproximateNumberOfMessagesVisible", 0, "messages wait in the DLQ"
        )
        resources[f"{base}AgeAlarm"] = _alarm(
            f"{base}Queue",
            "ApproximateAgeOfOldestMessage",
            settings.dlq_age_alarm_seconds,
            "the oldest message waits too long",
        )


def _published(resources: dict[str, Any], function: str, settings: RenderSettings) -> Any:
    """A published version and a ``live`` alias, with provisioned concurrency or SnapStart."""
    if settings.snapstart:
        resources[function]["Properties"]["SnapStart"] = {"ApplyOn": "PublishedVersions"}
    resources[f"{function}Version"] = {
        "Type": "AWS::Lambda::Version",
        "Properties": {"FunctionName": {"Ref": function}},
    }
    alias: dict[str, Any] = {
        "FunctionName": {"Ref": function},
        "FunctionVersion": {"Fn::GetAtt": [f"{function}Version", "Version"]},
        "Name": "live",
    }
    if settings.provisioned_concurrency:
        alias["ProvisionedConcurrencyConfig"] = {
            "ProvisionedConcurrentExecutions": settings.provisioned_concurrency
        }
    resources[f"{function}Alias"] = {"Type": "AWS::Lambda::Alias", "Properties": alias}
    return {"Ref": f"{function}Alias"}


def _keep_warm(resources: dict[str, Any], function: str, target: Any, schedule: str) -> None:
    """A schedule that pings the function; the handler answers without the database."""
    arn = target if "Ref" in target and target["Ref"].endswith("Alias") else _arn(function)
    resources[f"{function}KeepWarm"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "ScheduleExpression": schedule,
            "State": "ENABLED",
            "Targets": [
                {"Id": "keep-warm", "Arn": arn, "Input": json.dumps({"replication": "keep-warm"})}
            ],
        },
    }
    resources[f"{function}KeepWarmPermission"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": target,
            "Principal": "events.amazonaws.com",
            "SourceArn": _arn(f"{function}KeepWarm"),
        },
    }


def _alarm(queue_logical: str, metric: str, threshold: int, what: str) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": f"Replication: {what}",
            "Namespace": "AWS/SQS",
            "MetricName": metric,
            "Dimensions": [
                {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_logical, "QueueName"]}}
            ],
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
        },
    }
