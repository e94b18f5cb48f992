"""CloudFormation resources of the services' functions: roles, functions, schedules, alarms.

Each function has its own artifact (``replication package``), given as
``<Service><Function>CodeKey`` in ``CodeBucket``; its own log group with the
stack's retention; its database from ``<SERVICE>_DATABASE_SECRET_ARN``, reached
over TLS as ``DatabaseTls`` and ``DatabaseCaBundle`` say (:data:`DATABASE_PARAMETERS`);
and ``REPLICATION_PAYLOAD_BUCKET``. Alarms notify ``AlarmTopicArn`` when given.
"""

from __future__ import annotations

__all__ = ["DATABASE_PARAMETERS", "alarm", "consumer_resources", "relay_resources"]

import json
from typing import Any

from replication.dbtls import CA_BUNDLE_ENV, MODES, PACKAGED_CA_BUNDLE, TLS_ENV
from replication.manifest import Manifest
from replication.topology.cfn_common import (
    APPLY_HANDLER,
    FUNCTION_SKIPS,
    RELAY_HANDLER,
    RenderSettings,
    arn,
    logical,
    sub,
)
from replication.topology.cfn_storage import PAYLOAD_BUCKET, log_group, payload_statement
from replication.topology.model import QueueSpec, TopicSpec

# Lambda inside a VPC manages its network interfaces. AWS offers no resource-level
# permission for ec2:DescribeNetworkInterfaces, so that one action needs "*"; the others
# are held to this account and region's interfaces, subnets and security groups.
_EC2 = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}"
_VPC_STATEMENTS = [
    {
        "Effect": "Allow",
        "Action": "ec2:CreateNetworkInterface",
        "Resource": [
            sub(f"{_EC2}:network-interface/*"),
            sub(f"{_EC2}:subnet/*"),
            sub(f"{_EC2}:security-group/*"),
        ],
    },
    {
        "Effect": "Allow",
        "Action": [
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        ],
        "Resource": sub(f"{_EC2}:network-interface/*"),
    },
    {"Effect": "Allow", "Action": "ec2:DescribeNetworkInterfaces", "Resource": "*"},
]


def _role(
    resources: dict[str, Any], resource_id: str, statements: list[dict[str, Any]], service: str
) -> None:
    secret = {"Ref": f"{logical(service)}DatabaseSecretArn"}
    log_group = sub(
        f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/${{Prefix}}-{service}-*"
    )
    # Inside a VPC only: a policy of its own (a condition on a whole resource), which the
    # role's functions wait for through their metadata (see _function).
    resources[f"{resource_id}VpcPolicy"] = {
        "Type": "AWS::IAM::Policy",
        "Condition": "InVpc",
        "Properties": {
            "PolicyName": "vpc-network-interfaces",
            "Roles": [{"Ref": resource_id}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": _VPC_STATEMENTS},
        },
    }
    resources[resource_id] = {
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
                },
            ],
        },
    }


def _function(
    resources: dict[str, Any],
    resource_id: str,
    name: str,
    handler: str,
    role: str,
    timeout: int,
    environment: dict[str, Any],
    settings: RenderSettings,
    concurrency: int,
    memory: int | None = None,
) -> None:
    logs = log_group(resources, f"{resource_id}Logs", name)
    resources[resource_id] = {
        "Type": "AWS::Lambda::Function",
        "Metadata": {
            "checkov": {"skip": FUNCTION_SKIPS},
            # In a VPC, created once its role may manage network interfaces (DependsOn
            # cannot name a resource that a condition may leave out; a reference can).
            "replication": {"VpcPolicy": {"Fn::If": ["InVpc", {"Ref": f"{role}VpcPolicy"}, ""]}},
        },
        # Created after its log group, so Lambda never creates one without retention.
        "DependsOn": [logs],
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
            "FunctionName": sub(name),
            "Runtime": settings.runtime,
            "Handler": handler,
            "Code": {
                "S3Bucket": {"Ref": "CodeBucket"},
                "S3Key": {"Ref": f"{resource_id.removesuffix('Function')}CodeKey"},
            },
            "Architectures": [settings.architecture],
            "Role": arn(role),
            "Timeout": timeout,
            "MemorySize": memory or settings.memory,
            "Environment": {"Variables": environment},
        },
    }


DATABASE_PARAMETERS: dict[str, Any] = {
    "DatabaseTls": {
        "Type": "String",
        "Default": "verify",
        "AllowedValues": list(MODES),
        "Description": "TLS of the functions' database connections: verify (certificate "
        "and host name checked against DatabaseCaBundle), require (encrypted, not "
        "checked), off (as the server offers; local databases only)",
    },
    "DatabaseCaBundle": {
        "Type": "String",
        "Default": PACKAGED_CA_BUNDLE,
        "Description": "PEM file of the CA certificates of the databases (for RDS its "
        "global-bundle.pem), in the function's artifact: replication package "
        f"--database-ca-bundle puts one at {PACKAGED_CA_BUNDLE}. Empty: the system's CA "
        "certificates",
    },
}
"""The template's parameters for the TLS of every function's database connections."""


def _environment(manifest: Manifest) -> dict[str, Any]:
    """What a service's functions are told: the manifest, the prefix, the secret, the bucket,
    and how their database connections are secured."""
    return {
        "REPLICATION_MANIFEST": f"{manifest.service}/replication.yaml",
        "REPLICATION_PREFIX": {"Ref": "Prefix"},
        manifest.database_secret_env: {"Ref": f"{logical(manifest.service)}DatabaseSecretArn"},
        TLS_ENV: {"Ref": "DatabaseTls"},
        CA_BUNDLE_ENV: {"Ref": "DatabaseCaBundle"},
        "REPLICATION_PAYLOAD_BUCKET": {"Ref": PAYLOAD_BUCKET},
    }


def relay_resources(
    resources: dict[str, Any], manifest: Manifest, topics: list[TopicSpec], settings: RenderSettings
) -> None:
    service = logical(manifest.service)
    role = f"{service}RelayRole"
    publish = {
        "Effect": "Allow",
        "Action": "sns:Publish",
        "Resource": [{"Ref": logical(t.entity, f"v{t.version}", "Topic")} for t in topics],
    }
    offload = payload_statement("s3:PutObject", [manifest.service])
    _role(resources, role, [publish, offload], manifest.service)
    # The relay role's name is fixed so that topic policies in other accounts can name it.
    resources[role]["Properties"]["RoleName"] = sub(f"${{Prefix}}-{manifest.service}-relay")
    function = f"{service}RelayFunction"
    environment = {**_environment(manifest), "REPLICATION_RELAY_MODE": settings.relay_mode}
    _function(
        resources,
        function,
        f"${{Prefix}}-{manifest.service}-relay",
        RELAY_HANDLER,
        role,
        settings.relay_timeout,
        environment,
        settings,
        # In follow mode each run overlaps the next one's first seconds.
        concurrency=2,
        memory=settings.relay_memory,
    )
    resources[f"{service}OutboxAgeAlarm"] = alarm(
        "the oldest unpublished outbox row waits too long",
        {
            "Namespace": "Replication",
            "MetricName": "OutboxOldestPendingSeconds",
            "Dimensions": [{"Name": "service", "Value": manifest.service}],
        },
        settings.outbox_age_alarm_seconds,
        # No data means no relay ran (or reported) at all: that breaches too, but over
        # three minutes, two of them breaching, so one late report is not an incident.
        missing="breaching",
        periods=3,
    )
    resources[f"{service}RelaySchedule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "ScheduleExpression": settings.relay_schedule,
            "State": "ENABLED",
            "Targets": [{"Id": "relay", "Arn": arn(function)}],
        },
    }
    resources[f"{service}RelaySchedulePermission"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": function},
            "Principal": "events.amazonaws.com",
            "SourceArn": arn(f"{service}RelaySchedule"),
        },
    }


def consumer_resources(
    resources: dict[str, Any],
    manifest: Manifest,
    queues: list[QueueSpec],
    settings: RenderSettings,
    owner_accounts: dict[str, str] | None = None,
) -> None:
    """The apply function of ``manifest``'s service, its role, mappings and alarms.

    ``owner_accounts`` names the account of each owner whose topics are in another
    account: the function checks an SNS envelope's topic by its full ARN.
    """
    service = logical(manifest.service)
    role = f"{service}ApplyRole"
    bases = [logical(q.consumer, q.entity, f"v{q.version}") for q in queues]
    statements = [
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            "Resource": [arn(f"{b}Queue") for b in bases],
        },
        {
            # Permanent failures go to the DLQ at once, with their reason.
            "Effect": "Allow",
            "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes"],
            "Resource": [arn(f"{b}Dlq") for b in bases],
        },
    ]
    owners = [q.entity.split(".", 1)[0] for q in queues]
    statements.append(payload_statement("s3:GetObject", owners))
    _role(resources, role, statements, manifest.service)
    # Named: the DLQs' policies admit this role (and the operators) only.
    resources[role]["Properties"]["RoleName"] = sub(f"${{Prefix}}-{manifest.service}-apply")
    function = f"{service}ApplyFunction"
    _function(
        resources,
        function,
        f"${{Prefix}}-{manifest.service}-apply",
        APPLY_HANDLER,
        role,
        settings.apply_timeout,
        {**_environment(manifest), **_owner_accounts(owner_accounts or {})},
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
            "EventSourceArn": arn(f"{base}Queue"),
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
        resources[f"{base}DlqDepthAlarm"] = alarm(
            "messages wait in the DLQ",
            _queue_metric(f"{base}Dlq", "ApproximateNumberOfMessagesVisible"),
            0,
        )
        resources[f"{base}AgeAlarm"] = alarm(
            "the oldest message waits too long",
            _queue_metric(f"{base}Queue", "ApproximateAgeOfOldestMessage"),
            settings.dlq_age_alarm_seconds,
        )


def _owner_accounts(accounts: dict[str, str]) -> dict[str, str]:
    """``REPLICATION_OWNER_ACCOUNTS`` when some owner's topics are in another account."""
    if not accounts:
        return {}
    return {"REPLICATION_OWNER_ACCOUNTS": ",".join(f"{s}={a}" for s, a in sorted(accounts.items()))}


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
    rule_target = target if "Ref" in target and target["Ref"].endswith("Alias") else arn(function)
    resources[f"{function}KeepWarm"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "ScheduleExpression": schedule,
            "State": "ENABLED",
            "Targets": [
                {
                    "Id": "keep-warm",
                    "Arn": rule_target,
                    "Input": json.dumps({"replication": "keep-warm"}),
                }
            ],
        },
    }
    resources[f"{function}KeepWarmPermission"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": target,
            "Principal": "events.amazonaws.com",
            "SourceArn": arn(f"{function}KeepWarm"),
        },
    }


def _queue_metric(queue_logical: str, metric: str) -> dict[str, Any]:
    return {
        "Namespace": "AWS/SQS",
        "MetricName": metric,
        "Dimensions": [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_logical, "QueueName"]}}
        ],
    }


def alarm(
    what: str,
    metric: dict[str, Any],
    threshold: int,
    *,
    missing: str = "notBreaching",
    periods: int = 1,
) -> dict[str, Any]:
    """An alarm on ``metric`` above ``threshold``, notifying ``AlarmTopicArn`` when given."""
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": f"Replication: {what}",
            **metric,
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": periods,
            "DatapointsToAlarm": max(1, periods - 1),
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": missing,
            "AlarmActions": {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            },
        },
    }
