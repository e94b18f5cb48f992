"""The deployed stack: the rendered template on the emulator's CloudFormation, its functions
run from their artifacts by the Lambda runtime interface client.

1. ``replication package`` builds crm's relay and orders' apply artifacts for this
   machine's architecture and Python (so they can run here).
2. The template rendered for the examples is created with ``create-stack`` on a moto
   server and reaches ``CREATE_COMPLETE``. moto's CloudFormation skips some resource
   types; those are listed, and their properties compared with what ``replication
   topology apply`` creates on the same emulator.
3. Each function's artifact, unzipped into an empty folder, runs under awslambdaric
   with exactly the environment its deployed configuration holds (read back with
   ``GetFunctionConfiguration``; the database secrets exist in the emulator in RDS's
   format) plus what Lambda itself sets, and the emulator's endpoint. The relay
   publishes crm's committed changes, one over 256 KiB through the payload bucket;
   the apply function applies the resulting SQS batch into PostgreSQL; the mirror
   equals the owner.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from examples.crm import service as crm
from replication.consumer.runner import QueueSource, to_lambda_record
from replication.manifest import load_manifest
from replication.migrations import service_metadata
from tests.aws import ACCOUNT, CREDENTIALS, REGION, MotoServer, moto_server
from tests.databases import POSTGRES_URL
from tests.lambda_runtime import RuntimeApi, client_venv, start_function, unzip
from tests.paths import ROOT

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine(), "")
SERVICES = ("crm", "catalog", "orders")
# Resource types moto's CloudFormation does not create (it logs "No Moto CloudFormation
# support for ..."): each is compared below with what `topology apply` creates.
MOTO_SKIPS = {
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::S3::BucketPolicy",
}

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.skipif(not ARCH, reason=f"no Lambda architecture is {platform.machine()}"),
]


def database_url(service: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/deployed_{service}"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "replication.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _databases() -> dict[str, sa.Engine]:
    admin = sa.create_engine(
        POSTGRES_URL.replace("postgresql:", "postgresql+psycopg2:", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        for service in SERVICES:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS deployed_{service} WITH (FORCE)")
            connection.exec_driver_sql(f"CREATE DATABASE deployed_{service}")
    admin.dispose()
    engines = {
        s: sa.create_engine(database_url(s).replace("postgresql:", "postgresql+psycopg2:", 1))
        for s in SERVICES
    }
    crm.create_schema(engines["crm"])
    orders = load_manifest(ROOT / "examples" / "orders" / "replication.yaml")
    service_metadata(orders).create_all(engines["orders"])
    return engines


class Stack:
    """The deployed stack on the emulator, and how to reach what it created."""

    def __init__(self, moto: MotoServer, template: dict[str, Any], name: str) -> None:
        self.moto = moto
        self.template = template
        cfn = moto.client("cloudformation")
        self.physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
            if r["LogicalResourceId"]  # moto also lists one nameless entry of its own
        }

    def queue_arn(self, logical: str) -> str:
        attributes = self.moto.client("sqs").get_queue_attributes(
            QueueUrl=self.physical[logical], AttributeNames=["QueueArn", "Policy"]
        )["Attributes"]
        return str(attributes["QueueArn"])

    def resolve(self, value: Any) -> Any:
        """The template's Ref and GetAtt Arn of topics, queues and roles, as created."""
        if isinstance(value, dict) and "Ref" in value:
            return self.physical[value["Ref"]]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical, _ = value["Fn::GetAtt"]
            kind = self.template["Resources"][logical]["Type"]
            if kind == "AWS::SQS::Queue":
                return self.queue_arn(logical)
            if kind == "AWS::IAM::Role":
                return f"arn:aws:iam::{ACCOUNT}:role/{self.physical[logical]}"
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("functions")
    for service in ("crm", "orders"):
        cli("package", "--service", service, "--arch", ARCH, "--python", PYTHON, "--out", str(out))
    return {p.name.split("-")[0]: p for p in out.glob("*.zip")}


@pytest.fixture(scope="module")
def deployed(
    moto: MotoServer, artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, dict[str, sa.Engine]]]:
    engines = _databases()
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="functions")
    # The test databases have no TLS: the template's default, verify, would refuse them.
    parameters = {"CodeBucket": "functions", "Prefix": "dev", "DatabaseTls": "off"}
    for service, artifact in artifacts.items():
        key = f"{uuid.uuid4().hex[:8]}/{artifact.name}"
        s3.upload_file(str(artifact), "functions", key)
        function = "Relay" if "-relay-" in artifact.name else "Apply"
        parameters[f"{service.title()}{function}CodeKey"] = key
    parameters["CatalogRelayCodeKey"] = parameters["CrmRelayCodeKey"]  # deployed, not run
    secrets = moto.client("secretsmanager")
    for service in SERVICES:
        parts = urlsplit(database_url(service))
        secret = {  # "credentials for an RDS database", as RDS writes the secret
            "engine": "postgres",
            "host": parts.hostname,
            "port": parts.port or 5432,
            "username": parts.username,
            "password": parts.password or "",
            "dbname": parts.path.lstrip("/"),
        }
        arn = secrets.create_secret(Name=f"{service}-db", SecretString=json.dumps(secret))["ARN"]
        parameters[f"{service.title()}DatabaseSecretArn"] = arn
    out = tmp_path_factory.mktemp("cfn")
    rendered = cli(
        *("topology", "render", "--manifests", "examples", "--out", str(out)),
        *("--python", PYTHON, "--arch", ARCH),
    )
    assert "replication-default.json" in rendered.stdout
    template = json.loads((out / "replication-default.json").read_text())
    cfn = moto.client("cloudformation")
    cfn.create_stack(
        StackName="replication-dev",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    status = ""
    for _ in range(120):
        stack = cfn.describe_stacks(StackName="replication-dev")["Stacks"][0]
        status = stack["StackStatus"]
        if not status.endswith("IN_PROGRESS"):
            break
        time.sleep(0.5)
    assert status == "CREATE_COMPLETE", stack.get("StackStatusReason")
    yield Stack(moto, template, "replication-dev"), engines
    for engine in engines.values():
        engine.dispose()


def test_the_stack_reaches_create_complete_and_what_moto_skips_matches_topology_apply(
    deployed: tuple[Stack, dict[str, sa.Engine]], moto: MotoServer
) -> None:
    stack, _ = deployed
    resources = stack.template["Resources"]
    # Outside a VPC (no SubnetIds) the conditional VPC policies are rightly absent.
    expected = {k for k, r in resources.items() if r.get("Condition") != "InVpc"}
    skipped = {k: resources[k]["Type"] for k in expected - set(stack.physical)}
    assert set(skipped.values()) == MOTO_SKIPS, skipped
    assert set(stack.physical) <= set(resources)

    env = {**moto.env(), "AWS_REGION": REGION}
    cli("topology", "apply", "--manifests", "examples", "--prefix", "dev", env=env)
    sns, sqs = moto.client("sns"), moto.client("sqs")
    compared = 0
    for logical, kind in sorted(skipped.items()):
        properties = resources[logical]["Properties"]
        if kind == "AWS::SNS::Subscription":
            topic, endpoint = (
                stack.resolve(properties["TopicArn"]),
                stack.resolve(properties["Endpoint"]),
            )
            [live] = [
                s
                for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
                if s["Endpoint"] == endpoint
            ]
            attributes = sns.get_subscription_attributes(SubscriptionArn=live["SubscriptionArn"])[
                "Attributes"
            ]
            assert (live["Protocol"], attributes["RawMessageDelivery"]) == ("sqs", "true")
            assert properties["RawMessageDelivery"] is True
            assert json.loads(attributes.get("FilterPolicy") or "null") == properties.get(
                "FilterPolicy"
            )
        elif kind == "AWS::SQS::QueuePolicy":
            [queue] = properties["Queues"]
            policy = sqs.get_queue_attributes(
                QueueUrl=stack.resolve(queue), AttributeNames=["Policy"]
            )
            live = json.loads(policy["Attributes"]["Policy"])["Statement"]
            assert stack.resolve(properties["PolicyDocument"]["Statement"]) == live
        elif kind == "AWS::SNS::TopicPolicy":
            [topic] = properties["Topics"]
            policy = sns.get_topic_attributes(TopicArn=stack.resolve(topic))["Attributes"]["Policy"]
            live = json.loads(policy)["Statement"]
            wanted = stack.resolve(properties["PolicyDocument"]["Statement"])
            assert [s for s in live if s.get("Sid") == "OwnerPublishes"] == [
                s for s in wanted if s["Sid"] == "OwnerPublishes"
            ]
        else:  # alarms and the bucket policy have no counterpart in topology apply
            continue
        compared += 1
    # Two subscriptions, four queue policies (two queues, two DLQs), two topic policies.
    assert compared == 2 + 4 + 2


def _customer(name: str, tags: list[str]) -> crm.CustomerRow:
    key = str(uuid.uuid4())
    return crm.CustomerRow(
        id=key,
        name=name,
        email=f"{key[:8]}@example.com",
        tier="gold",
        credit_limit=Decimal("100.00"),
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        tags=tags,
        street="1 Main St",
        city="Lyon",
        postal_code="69001",
        country="FR",
    )


def _environment(moto: MotoServer, function: str) -> dict[str, str]:
    """The deployed function's environment, plus Lambda's own credentials and region."""
    configuration = moto.client("lambda").get_function_configuration(FunctionName=function)
    variables: dict[str, str] = configuration["Environment"]["Variables"]
    assert configuration["Handler"].startswith("replication.")
    return {
        **variables,
        **CREDENTIALS,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto.endpoint,  # the emulator standing in for AWS's endpoints
    }


def test_the_functions_run_from_their_artifacts_with_only_their_deployed_environment(
    deployed: tuple[Stack, dict[str, sa.Engine]],
    moto: MotoServer,
    artifacts: dict[str, Path],
    tmp_path: Path,
) -> None:
    stack, engines = deployed
    env = {**moto.env(), "AWS_REGION": REGION}
    cli("topology", "apply", "--manifests", "examples", "--prefix", "dev", env=env)
    # moto hands a queue's messages to the function of its event source mapping, which
    # it cannot run here (that needs Docker) and so loses them: the test disables the
    # mappings and plays their part itself.
    lambdas = moto.client("lambda")
    for mapping in lambdas.list_event_source_mappings()["EventSourceMappings"]:
        lambdas.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    with crm.sessions(engines["crm"]).begin() as session:
        session.add_all([_customer(f"Customer {n}", ["b2b"]) for n in range(5)])
        session.add(_customer("Big tags", [f"tag-{n:06d}-" + "x" * 40 for n in range(6000)]))
    with engines["crm"].connect() as connection:
        owner: dict[str, str] = dict(
            connection.exec_driver_sql("SELECT id, name FROM crm_customers").all()
        )
    assert len(owner) == 6

    python = client_venv(tmp_path / "ric")
    api, apply_api = RuntimeApi(), RuntimeApi()  # each function its own, as on Lambda
    relay_env = _environment(moto, "dev-crm-relay")
    assert relay_env["REPLICATION_DATABASE_TLS"] == "off"  # the stack's DatabaseTls
    relay_root = unzip(artifacts["crm"], tmp_path / "relay")
    relay = start_function(
        python, relay_root, "replication.outbox.function.lambda_handler", relay_env, api
    )
    apply = None
    try:
        answer = api.invoke({"source": "aws.events"}, timeout=6)
        assert answer.kind == "response", answer.body
        assert (answer.body["published"], answer.body["offloaded"]) == (6, 1)
        assert answer.body["backlog"] == 0

        sqs = moto.client("sqs")
        url = sqs.get_queue_url(QueueName="dev-orders--crm-customer-v1")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while len(messages) < 6 and time.monotonic() < deadline:
            messages += sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=300,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            ).get("Messages", [])
        assert len(messages) == 6
        pointers = [m for m in messages if "ExtendedPayloadSize" in m.get("MessageAttributes", {})]
        assert len(pointers) == 1
        assert int(pointers[0]["MessageAttributes"]["ExtendedPayloadSize"]["StringValue"]) > (
            256 * 1024
        )
        source = QueueSource("dev-orders--crm-customer-v1", url, arn, REGION)
        event = {"Records": [to_lambda_record(m, source) for m in messages]}

        apply_env = _environment(moto, "dev-orders-apply")
        apply_root = unzip(artifacts["orders"], tmp_path / "apply")
        apply = start_function(
            python, apply_root, "replication.consumer.handler.lambda_handler", apply_env, apply_api
        )
        answer = apply_api.invoke(event, timeout=30)
        assert answer.kind == "response", answer.body
        assert answer.body == {"batchItemFailures": []}
    finally:
        for process in (relay, apply):
            if process is not None:
                process.kill()
                output = process.communicate(timeout=10)[0]
                assert "Traceback" not in output, output[-4000:]
        api.close()
        apply_api.close()

    with engines["orders"].connect() as connection:
        mirror: dict[str, str] = dict(
            connection.exec_driver_sql(
                "SELECT id::text, name FROM customer_mirror WHERE NOT _deleted"
            ).all()
        )
    assert mirror == {str(k): v for k, v in owner.items()}
    assert stack.physical["PayloadBucket"] == relay_env["REPLICATION_PAYLOAD_BUCKET"]
    [offloaded] = moto.client("s3").list_objects_v2(Bucket=relay_env["REPLICATION_PAYLOAD_BUCKET"])[
        "Contents"
    ]
    assert offloaded["Key"].startswith("events/crm/")
