"""The CloudFormation rendering: cfn-lint clean, secure by construction, one per account."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from replication.errors import ConfigurationError
from replication.manifest import load_manifests
from replication.topology.cloudformation import RenderSettings, render_templates
from tests.paths import ROOT


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == kind}


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for resource in template["Resources"].values():
        properties = resource["Properties"]
        for document in [properties.get("PolicyDocument")] + [
            p["PolicyDocument"] for p in properties.get("Policies", [])
        ]:
            if document:
                found += document["Statement"]
    return found


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return render_templates(load_manifests([ROOT / "examples"]))["default"]


def test_the_rendered_template_passes_cfn_lint_without_errors_or_warnings(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "replication.cli", "topology", "render"),
            *("--manifests", "examples", "--out", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [template] = tmp_path.iterdir()
    lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    assert lint is not None
    linted = subprocess.run([lint, str(template)], capture_output=True, text=True, check=False)
    assert (linted.returncode, linted.stdout) == (0, "")


def test_queues_admit_only_their_topic_and_everything_is_encrypted(example: dict[str, Any]) -> None:
    topics = resources(example, "AWS::SNS::Topic")
    queues = resources(example, "AWS::SQS::Queue")
    policies = resources(example, "AWS::SQS::QueuePolicy")

    assert topics
    assert all(t["KmsMasterKeyId"] == "alias/aws/sns" for t in topics.values())
    assert len(queues) == 4  # two queues and their DLQs
    assert all(q["SqsManagedSseEnabled"] is True for q in queues.values())
    assert len(policies) == 4  # each queue and each DLQ has one
    for name, policy in policies.items():
        [target] = policy["Queues"]
        grants = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
        if name.endswith("DlqPolicy"):
            # Only the consumer's apply function sends poison there; nobody else.
            assert sorted(grants) == ["OnlyTheConsumerSends"], name
            deny = grants["OnlyTheConsumerSends"]
            assert deny["Condition"] == {
                "ArnNotEquals": {"aws:PrincipalArn": [{"Fn::GetAtt": ["OrdersApplyRole", "Arn"]}]}
            }
            assert target["Ref"].endswith("Dlq")
        else:
            assert sorted(grants) == ["NobodyElseSends", "TopicDelivers"], name
            allow, deny = grants["TopicDelivers"], grants["NobodyElseSends"]
            assert allow["Principal"] == {"Service": "sns.amazonaws.com"}
            topic = allow["Condition"]["ArnEquals"]["aws:SourceArn"]
            assert topic["Ref"].endswith("Topic"), name
            # A direct SendMessage has no aws:SourceArn: the deny holds for it.
            assert deny["Condition"] == {"ArnNotEquals": {"aws:SourceArn": topic}}
            assert target["Ref"].endswith("Queue")
        assert all(s["Action"] == "sqs:SendMessage" for s in grants.values())
        assert all(s["Resource"] == {"Fn::GetAtt": [target["Ref"], "Arn"]} for s in grants.values())
    roles = resources(example, "AWS::IAM::Role")
    assert roles["OrdersApplyRole"]["RoleName"] == {"Fn::Sub": "${Prefix}-orders-apply"}


def test_no_policy_grants_a_wildcard_action_and_roles_are_scoped(example: dict[str, Any]) -> None:
    granted = [s for s in statements(example) if s["Effect"] == "Allow"]
    for statement in granted:
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert "*" not in action, statement
        # The one action AWS gives no resource-level permission for.
        if statement.get("Resource") == "*":
            assert statement["Action"] == "ec2:DescribeNetworkInterfaces", statement
    # No managed policy: the VPC permissions are written inline, scoped to the account.
    assert all("ManagedPolicyArns" not in r for r in resources(example, "AWS::IAM::Role").values())
    denied = [s for s in statements(example) if s["Effect"] == "Deny"]
    assert [s["Condition"] for s in denied if s["Action"] != "sqs:SendMessage"] == [
        {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len([s for s in denied if s["Action"] == "sqs:SendMessage"]) == 4  # queues, DLQs
    relay = resources(example, "AWS::IAM::Role")["CrmRelayRole"]
    [policy] = relay["Policies"]
    vpc = example["Resources"]["CrmRelayRoleVpcPolicy"]
    assert (vpc["Condition"], vpc["Properties"]["Roles"]) == ("InVpc", [{"Ref": "CrmRelayRole"}])
    publish = policy["PolicyDocument"]["Statement"][0]
    assert publish == {
        "Effect": "Allow",
        "Action": "sns:Publish",
        "Resource": [{"Ref": "CrmCustomerV1Topic"}],
    }


def test_apply_functions_report_batch_item_failures_with_a_long_enough_visibility(
    example: dict[str, Any],
) -> None:
    settings = RenderSettings()
    mappings = resources(example, "AWS::Lambda::EventSourceMapping")
    queues = resources(example, "AWS::SQS::Queue")

    assert len(mappings) == 2
    for mapping in mappings.values():
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BatchSize"] == settings.batch_size
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": settings.max_concurrency}
    for name, queue in queues.items():
        if not name.endswith("Dlq"):
            assert queue["VisibilityTimeout"] >= 6 * settings.apply_timeout
            assert queue["RedrivePolicy"]["maxReceiveCount"] >= 5
    alarms = resources(example, "AWS::CloudWatch::Alarm")
    assert sorted({a["MetricName"] for a in alarms.values()}) == [
        "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesVisible",
        "OutboxOldestPendingSeconds",
    ]
    secrets = [p for p in example["Parameters"] if p.endswith("DatabaseSecretArn")]
    assert sorted(secrets) == [
        "CatalogDatabaseSecretArn",
        "CrmDatabaseSecretArn",
        "OrdersDatabaseSecretArn",
    ]


def test_services_in_several_accounts_get_one_template_each(tmp_path: Path) -> None:
    folder = tmp_path / "services"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for service, account in (
        ("crm", "111111111111"),
        ("orders", "222222222222"),
        ("catalog", "333333333333"),
    ):
        path = folder / service / "replication.yaml"
        path.write_text(
            path.read_text().replace(
                f"service: {service}\n", f'service: {service}\naccount: "{account}"\n'
            )
        )

    templates = render_templates(load_manifests([folder]))

    assert sorted(templates) == ["111111111111", "222222222222", "333333333333"]
    orders = templates["222222222222"]
    assert resources(orders, "AWS::SNS::Topic") == {}
    subscription = resources(orders, "AWS::SNS::Subscription")["OrdersCrmCustomerV1Subscription"]
    assert subscription["TopicArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:111111111111:${Prefix}-crm-customer-v1"
    }
    crm = templates["111111111111"]
    policy = resources(crm, "AWS::SNS::TopicPolicy")["CrmCustomerV1TopicPolicy"]
    grants = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    # orders' account may subscribe orders' queue, not any queue of its choosing.
    subscribe = grants["Account222222222222SubscribesItsQueues"]
    assert subscribe["Principal"] == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::222222222222:root"}
    }
    assert subscribe["Action"] == "sns:Subscribe"
    assert subscribe["Condition"] == {
        "StringEquals": {
            "sns:Protocol": "sqs",
            "sns:Endpoint": [
                {
                    "Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:222222222222:"
                    "${Prefix}-orders--crm-customer-v1"
                }
            ],
        }
    }
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["OrdersCrmCustomerV1Queue", "Arn"]}
    queue_policy = resources(orders, "AWS::SQS::QueuePolicy")["OrdersCrmCustomerV1QueuePolicy"]
    allow, deny = queue_policy["PolicyDocument"]["Statement"]
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == subscription["TopicArn"]
    assert deny["Condition"]["ArnNotEquals"]["aws:SourceArn"] == subscription["TopicArn"]
    # crm's topic policy: its relay publishes, orders' account subscribes, nothing else
    assert sorted(grants) == ["Account222222222222SubscribesItsQueues", "OwnerPublishes"]
    # orders' apply function checks an envelope's topic in crm's account, not its own.
    function = resources(orders, "AWS::Lambda::Function")["OrdersApplyFunction"]
    variables = function["Environment"]["Variables"]
    assert variables["REPLICATION_OWNER_ACCOUNTS"] == "catalog=333333333333,crm=111111111111"
    for template in templates.values():
        json.dumps(template)  # serialisable as written


def test_a_consumer_in_an_account_cannot_mirror_an_owner_that_names_none(tmp_path: Path) -> None:
    """Its topic's ARN would name no account (the template once rendered ``:None:``)."""
    folder = tmp_path / "services"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = folder / "orders" / "replication.yaml"
    path.write_text(
        path.read_text().replace("service: orders\n", 'service: orders\naccount: "222222222222"\n')
    )

    with pytest.raises(ConfigurationError) as caught:
        render_templates(load_manifests([folder]))

    assert str(caught.value) == (
        "orders (account 222222222222) mirrors catalog.product v1, whose owner catalog names no "
        "account: give catalog's manifest its account; orders (account 222222222222) mirrors "
        "crm.customer v1, whose owner crm names no account: give crm's manifest its account"
    )


SCANNER = ROOT / ".venv-scan" / "bin" / "checkov"


def checkov(target: Path, home: Path) -> dict[str, Any]:
    """The security scanner's JSON report on a template file."""
    scan = subprocess.run(
        [
            *(str(SCANNER), "-f", str(target), "--framework", "cloudformation"),
            *("--compact", "--output", "json"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "BC_SKIP_MAPPING": "TRUE", "HOME": str(home)},
        timeout=300,
    )
    report: dict[str, Any] = json.loads(scan.stdout)
    return report


def test_the_security_scanner_reports_no_failed_check(tmp_path: Path) -> None:
    if not SCANNER.exists():
        from tests.databases import unavailable

        unavailable(f"checkov is not installed at {SCANNER} (make install sets it up)")
    templates = render_templates(load_manifests([ROOT / "examples"]))
    target = tmp_path / "replication.json"
    target.write_text(json.dumps(templates["default"]))

    report = checkov(target, tmp_path)
    summary = report["summary"]
    assert summary["failed"] == 0, report["results"]["failed_checks"]
    assert summary["passed"] >= 40
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == {
        *("CKV_AWS_27", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"),  # queues, functions
        *("CKV_AWS_18", "CKV_AWS_21"),  # the payload bucket: access logs, versioning
        "CKV_AWS_158",  # log groups: CloudWatch Logs' own encryption
    }


@pytest.mark.parametrize(
    "settings",
    [
        RenderSettings(provisioned_concurrency=2, keep_warm="rate(5 minutes)"),
        RenderSettings(snapstart=True),
    ],
    ids=["provisioned-and-keep-warm", "snapstart"],
)
def test_cold_start_options_render_lint_clean_and_route_through_an_alias(
    settings: RenderSettings, tmp_path: Path
) -> None:
    template = render_templates(load_manifests([ROOT / "examples"]), settings)["default"]
    target = tmp_path / "template.json"
    target.write_text(json.dumps(template))
    lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    assert lint is not None
    linted = subprocess.run([lint, str(target)], capture_output=True, text=True, check=False)
    assert (linted.returncode, linted.stdout) == (0, "")

    [alias] = resources(template, "AWS::Lambda::Alias").values()
    mappings = resources(template, "AWS::Lambda::EventSourceMapping").values()
    assert all(m["FunctionName"] == {"Ref": "OrdersApplyFunctionAlias"} for m in mappings)
    function = resources(template, "AWS::Lambda::Function")["OrdersApplyFunction"]
    if settings.snapstart:
        assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    else:
        assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
        [rule] = [
            r
            for name, r in resources(template, "AWS::Events::Rule").items()
            if name.endswith("KeepWarm")
        ]
        assert rule["ScheduleExpression"] == "rate(5 minutes)"
        assert json.loads(rule["Targets"][0]["Input"]) == {"replication": "keep-warm"}


def test_a_complete_stack_bucket_logs_alarm_actions_and_one_artifact_per_function(
    example: dict[str, Any],
) -> None:
    [(bucket_id, bucket)] = resources(example, "AWS::S3::Bucket").items()
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    [rule] = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == 4 + 14 + 1  # queue and DLQ retention, and a day
    assert "ServerSideEncryptionConfiguration" in bucket["BucketEncryption"]

    functions = resources(example, "AWS::Lambda::Function")
    assert sorted(functions) == ["CatalogRelayFunction", "CrmRelayFunction", "OrdersApplyFunction"]
    groups = resources(example, "AWS::Logs::LogGroup")
    for function_id, function in functions.items():
        environment = function["Environment"]["Variables"]
        assert environment["REPLICATION_PAYLOAD_BUCKET"] == {"Ref": bucket_id}
        key = function["Code"]["S3Key"]["Ref"]
        assert key == function_id.removesuffix("Function") + "CodeKey"
        assert key in example["Parameters"]
        assert example["Resources"][function_id]["DependsOn"] == [f"{function_id}Logs"]
        group = groups[f"{function_id}Logs"]
        assert group["LogGroupName"] == {
            "Fn::Sub": "/aws/lambda/" + function["FunctionName"]["Fn::Sub"]
        }
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    relay = functions["CrmRelayFunction"]["Environment"]["Variables"]
    assert relay["CRM_DATABASE_SECRET_ARN"] == {"Ref": "CrmDatabaseSecretArn"}
    assert relay["REPLICATION_RELAY_MODE"] == "follow"

    for alarm in resources(example, "AWS::CloudWatch::Alarm").values():
        assert alarm["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic"

    writes = [s for s in statements(example) if s["Action"] == "s3:PutObject"]
    reads = [s for s in statements(example) if s["Action"] == "s3:GetObject"]
    prefixes = sorted(r["Fn::Sub"] for s in writes for r in s["Resource"])
    assert prefixes == [
        "${PayloadBucket.Arn}/events/catalog/*",
        "${PayloadBucket.Arn}/events/crm/*",
    ]
    [read] = reads
    assert sorted(r["Fn::Sub"] for r in read["Resource"]) == prefixes


def test_names_that_would_share_a_resource_id_are_refused(tmp_path: Path) -> None:
    from replication.contracts import Contract
    from replication.errors import ConfigurationError
    from replication.manifest import Manifest

    class Left(Contract, entity="ab_c.d", version=1, key="id"):
        id: int

    class Right(Contract, entity="ab.c_d", version=1, key="id"):
        id: int

    def owner(service: str, entity: str) -> Manifest:
        folder = tmp_path / service
        folder.mkdir()
        (folder / "replication.yaml").write_text(
            f"service: {service}\ndatabase:\n  url_env: X_URL\n"
            f"owns:\n  - entity: {entity}\n    version: 1\n"
        )
        [manifest] = load_manifests([folder])
        return manifest

    manifests = [owner("ab_c", "ab_c.d"), owner("ab", "ab.c_d")]
    with pytest.raises(ConfigurationError, match="would share the CloudFormation id AbCDV1"):
        render_templates(manifests)


@pytest.mark.parametrize(
    "settings",
    [
        RenderSettings(relay_mode="drain", architecture="arm64", runtime="python3.13"),
        RenderSettings(provisioned_concurrency=2, keep_warm="rate(5 minutes)"),
        RenderSettings(snapstart=True, runtime="python3.12"),
        RenderSettings(runtime="python3.11", relay_mode="follow"),
    ],
    ids=["drain-arm64-py313", "provisioned-and-keep-warm", "snapstart", "py311"],
)
def test_every_rendering_option_passes_cfn_lint_and_the_security_scanner(
    settings: RenderSettings, tmp_path: Path
) -> None:
    if not SCANNER.exists():
        from tests.databases import unavailable

        unavailable(f"checkov is not installed at {SCANNER} (make install sets it up)")
    template = render_templates(load_manifests([ROOT / "examples"]), settings)["default"]
    target = tmp_path / "template.json"
    target.write_text(json.dumps(template))
    lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    assert lint is not None
    linted = subprocess.run([lint, str(target)], capture_output=True, text=True, check=False)
    assert (linted.returncode, linted.stdout) == (0, "")
    report = checkov(target, tmp_path)
    assert report["summary"]["failed"] == 0, report["results"]["failed_checks"]
    functions = resources(template, "AWS::Lambda::Function")
    assert {f["Runtime"] for f in functions.values()} == {settings.runtime}
    assert {tuple(f["Architectures"]) for f in functions.values()} == {(settings.architecture,)}
    relay = functions["CrmRelayFunction"]["Environment"]["Variables"]
    assert relay["REPLICATION_RELAY_MODE"] == settings.relay_mode


def test_snapstart_on_a_runtime_without_it_is_refused() -> None:
    from replication.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"SnapStart runs Python 3\.12 and newer"):
        render_templates(
            load_manifests([ROOT / "examples"]),
            RenderSettings(snapstart=True, runtime="python3.11"),
        )
