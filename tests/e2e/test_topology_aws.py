"""The topology applied to a moto server (boto3 over HTTP): routing, DLQs, drift, security."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replication.manifest import load_manifests
from replication.topology.aws import AwsTopology
from replication.topology.cloudformation import render_templates
from replication.topology.model import Topology, build_topology
from tests.aws import ACCOUNT, REGION, MotoServer, moto_server
from tests.paths import ROOT

BILLING = f"""service: billing
contracts: [contracts]
python_path: [{ROOT}]
database:
  url_env: BILLING_DATABASE_URL
mirrors:
  - entity: crm.customer
    version: 1
    table: customer_mirror
    fields: [id, name]
    max_receive_count: 6
"""


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """The example services plus billing, which mirrors customers only."""
    folder = tmp_path / "services"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "billing").mkdir()
    (folder / "billing" / "replication.yaml").write_text(BILLING)
    return folder


def topology_of(folder: Path) -> Topology:
    return build_topology(load_manifests([folder]), prefix=f"t{uuid.uuid4().hex[:6]}")


def aws(moto: MotoServer) -> AwsTopology:
    return AwsTopology(moto.client("sns"), moto.client("sqs"), region=REGION, account=ACCOUNT)


def receive_all(moto: MotoServer, queue: str) -> list[dict[str, Any]]:
    sqs = moto.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    got: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", [])
    return got


def test_apply_builds_the_topology_and_each_message_reaches_exactly_its_subscribers(
    moto: MotoServer, manifests: Path
) -> None:
    topology = topology_of(manifests)
    applied = aws(moto).apply(topology)
    assert {c.action for c in applied.changes} == {"create"}

    sns = moto.client("sns")
    for topic in topology.topics:
        arn = aws(moto).topic_arn(topic)
        sns.publish(TopicArn=arn, Message=json.dumps({"entity": topic.entity}))

    for queue in topology.queues:
        bodies = [json.loads(m["Body"]) for m in receive_all(moto, queue.name)]
        assert bodies == [{"entity": queue.entity}], queue.name
    assert sorted(
        q.consumer for q in topology.subscribers(topology.topic("crm.customer", 1).name)
    ) == [
        "billing",
        "orders",
    ]


def test_apply_again_changes_nothing_and_says_so(moto: MotoServer, manifests: Path) -> None:
    topology = topology_of(manifests)
    aws(moto).apply(topology)

    again = aws(moto).apply(topology)

    assert again.pending == ()
    assert "No changes: 11 resource(s) already match the manifests." in again.render()


def test_a_message_received_max_receive_count_times_moves_to_the_dlq(
    moto: MotoServer, manifests: Path
) -> None:
    topology = topology_of(manifests)
    aws(moto).apply(topology)
    [queue] = [q for q in topology.queues if q.consumer == "billing"]
    sqs = moto.client("sqs")
    url = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=queue.dlq)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")

    receives = 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            break
        receives += 1
        # Rejected: back into the queue at once.
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
        )
        assert receives <= 10

    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=1).get("Messages", [])
    assert receives == queue.max_receive_count == 6
    assert [m["Body"] for m in dead] == ["poison"]


def test_drift_is_reported_by_plan_and_fixed_by_apply(moto: MotoServer, manifests: Path) -> None:
    topology = topology_of(manifests)
    aws(moto).apply(topology)
    [queue] = [q for q in topology.queues if q.consumer == "billing"]
    sqs, sns = moto.client("sqs"), moto.client("sns")
    url = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
    dlq_arn = aws(moto).queue_arn(queue.dlq)
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
        },
    )
    topic_arn = aws(moto).topic_arn(topology.topic("crm.customer", 1))
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    [billing] = [s for s in subscriptions if s["Endpoint"] == aws(moto).queue_arn(queue.name)]
    sns.unsubscribe(SubscriptionArn=billing["SubscriptionArn"])

    plan = aws(moto).plan(topology)

    drift = {(c.action, c.kind, c.name): c.differences for c in plan.pending}
    assert set(drift) == {
        ("update", "queue", queue.name),
        ("create", "subscription", f"{queue.topic} -> {queue.name}"),
    }
    # (moto also drops the queue Policy when another attribute is set by hand; plan
    # reports that too, and apply restores it)
    [difference] = [d for d in drift[("update", "queue", queue.name)] if "RedrivePolicy" in d]
    assert difference.startswith("RedrivePolicy: ")
    assert '"maxReceiveCount": 3' in difference
    assert '"maxReceiveCount": 6' in difference

    aws(moto).apply(topology)
    assert aws(moto).plan(topology).pending == ()


OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/oncall/replication-operator"
AUDITOR = "arn:aws:iam::333333333333:role/replication-backfill"


def test_live_resources_are_encrypted_and_queues_admit_only_their_topic(
    moto: MotoServer, manifests: Path
) -> None:
    billing = manifests / "billing" / "replication.yaml"
    billing.write_text(BILLING + f"operator_roles:\n  - {OPERATOR}\n  - {AUDITOR}\n")
    topology = topology_of(manifests)
    live = aws(moto)
    live.apply(topology)
    sqs, sns = moto.client("sqs"), moto.client("sns")

    for topic in topology.topics:
        attributes = sns.get_topic_attributes(TopicArn=live.topic_arn(topic))["Attributes"]
        assert attributes["KmsMasterKeyId"] == "alias/aws/sns"
        policy = json.loads(attributes["Policy"])
        [statement] = policy["Statement"]
        assert statement["Action"] == "sns:Publish"
        assert statement["Principal"]["AWS"].endswith(
            f":role/{topology.prefix}-{topic.owner}-relay"
        )
    for queue in topology.queues:
        operators = [OPERATOR, AUDITOR] if queue.consumer == "billing" else []
        topic_arn = live.topic_arn(topology.topic(queue.entity, queue.version))
        grants = {s["Sid"]: s for s in live_policy(sqs, queue.name)["Statement"]}
        assert all(s["Action"] == "sqs:SendMessage" for s in grants.values())
        assert grants["TopicDelivers"]["Condition"] == {"ArnEquals": {"aws:SourceArn": topic_arn}}
        unless: dict[str, Any] = {"aws:SourceArn": topic_arn}
        if operators:
            unless["aws:PrincipalArn"] = operators
            assert grants["OperatorsSend"]["Principal"] == {
                "AWS": [f"arn:aws:iam::{ACCOUNT}:root", "arn:aws:iam::333333333333:root"]
            }
        assert grants["NobodyElseSends"]["Principal"] == "*"
        assert grants["NobodyElseSends"]["Condition"] == {"ArnNotEquals": unless}
        dlq = {s["Sid"]: s for s in live_policy(sqs, queue.dlq)["Statement"]}
        apply_role = f"arn:aws:iam::{ACCOUNT}:role/{topology.prefix}-{queue.consumer}-apply"
        assert dlq["OnlyTheConsumerSends"]["Condition"] == {
            "ArnNotEquals": {"aws:PrincipalArn": [apply_role, *operators]}
        }
        for name in (queue.name, queue.dlq):
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
                "Attributes"
            ]
            assert attributes["SqsManagedSseEnabled"] == "true"


def test_live_queue_policies_are_the_rendered_ones(moto: MotoServer, manifests: Path) -> None:
    """What topology apply provisions and what the template deploys deny the same senders."""
    billing = manifests / "billing" / "replication.yaml"
    billing.write_text(BILLING + f"operator_roles:\n  - {OPERATOR}\n")
    topology = topology_of(manifests)
    aws(moto).apply(topology)
    sqs = moto.client("sqs")
    [template] = render_templates(load_manifests([manifests])).values()
    resolve = resolver(template, topology.prefix)

    compared = 0
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::SQS::QueuePolicy":
            continue
        properties = resource["Properties"]
        [queue] = properties["Queues"]
        name = resolve(template["Resources"][queue["Ref"]]["Properties"]["QueueName"])
        rendered = resolve(properties["PolicyDocument"])
        live = live_policy(sqs, name)
        assert live == rendered, name
        assert [s for s in live["Statement"] if s["Effect"] == "Deny"], name
        compared += 1
    assert compared == 2 * len(topology.queues)


def live_policy(sqs: Any, name: str) -> Any:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]
    return json.loads(attributes["Policy"])


def resolver(template: dict[str, Any], prefix: str) -> Any:
    """Resolves the template's references as CloudFormation would in the emulator's account."""
    names = {
        "AWS::SQS::Queue": ("QueueName", "arn:aws:sqs:{region}:{account}:{name}"),
        "AWS::SNS::Topic": ("TopicName", "arn:aws:sns:{region}:{account}:{name}"),
        "AWS::IAM::Role": ("RoleName", "arn:aws:iam::{account}:role/{name}"),
    }
    variables = {
        "Prefix": prefix,
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
    }

    def arn_of(logical: str) -> str:
        resource = template["Resources"][logical]
        prop, shape = names[resource["Type"]]
        name = resolve(resource["Properties"][prop])
        return shape.format(region=REGION, account=ACCOUNT, name=name)

    def resolve(value: Any) -> Any:
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            for name, replacement in variables.items():
                text = text.replace("${" + name + "}", replacement)
            return text
        if set(value) == {"Ref"}:
            return arn_of(value["Ref"])  # a topic's Ref is its ARN
        if set(value) == {"Fn::GetAtt"}:
            logical, attribute = value["Fn::GetAtt"]
            assert attribute == "Arn"
            return arn_of(logical)
        return {k: resolve(v) for k, v in value.items()}

    return resolve


def test_the_plan_command_prints_json_for_scripts(moto: MotoServer, manifests: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "replication.cli", "topology", "plan", "--json"),
            *("--manifests", str(manifests), "--prefix", "cli"),
        ],
        cwd=ROOT,
        env=moto.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    changes = json.loads(done.stdout)["changes"]
    assert len(changes) == 11
    assert {c["action"] for c in changes} == {"create"}
    assert {
        "action": "create",
        "kind": "topic",
        "name": "cli-crm-customer-v1",
        "differences": [],
    } in (changes)


def test_destroy_keeps_queues_holding_messages_unless_told(
    moto: MotoServer, manifests: Path
) -> None:
    from replication.topology.aws import destroy

    topology = topology_of(manifests)
    live = aws(moto)
    live.apply(topology)
    [held] = [q for q in topology.queues if q.consumer == "billing"]
    sqs = moto.client("sqs")
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=held.dlq)["QueueUrl"], MessageBody="x")

    removals = destroy(live, topology)

    kept = [(r.kind, r.name, r.reason) for r in removals if not r.deleted]
    assert kept == [("dlq", held.dlq, "holds 1 message(s); export or replay them first")]
    assert sqs.get_queue_url(QueueName=held.dlq)["QueueUrl"]
    assert live.plan(topology).pending != ()
    assert {c.name for c in live.plan(topology).changes if c.action == "unchanged"} == {held.dlq}

    again = destroy(live, topology, delete_messages=True)
    assert [(r.kind, r.name, r.deleted) for r in again] == [("dlq", held.dlq, True)]


def test_the_destroy_command_needs_confirmation(moto: MotoServer, manifests: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "replication.cli", "topology", "destroy"),
            *("--manifests", str(manifests), "--prefix", "gone"),
        ],
        cwd=ROOT,
        env=moto.env(),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert "destroy needs confirmation: run it in a terminal or pass --yes" in done.stderr
