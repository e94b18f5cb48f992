"""The DLQ tooling on a moto server, without a database: FIFO order, hand-over failures,
export/purge/import, and the command's errors and exit codes."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from replication.dlq.archive import read_archive
from replication.dlq.messages import DeadLetter, Selection, parse_when, reason_summary
from replication.dlq.move import RateLimit, move_messages
from replication.dlq.queues import Queues
from replication.dlq.replay import replay_hand_over
from replication.manifest import load_manifests
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from tests.aws import ACCOUNT, REGION, MotoServer, moto_server
from tests.e2e_support import ROOT
from tests.e2e_support import run_cli as cli

QUEUE = "dev-orders--crm-customer-v1"
DLQ = "dev-orders--crm-customer-v1-dlq"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A fresh moto with the example topology; this process's boto3 pointed at it."""
    moto.reset()
    for key, value in moto.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("ORDERS_DATABASE_URL", raising=False)
    manifests = load_manifests([ROOT / "examples"])
    AwsTopology(moto.client("sns"), moto.client("sqs"), region=REGION, account=ACCOUNT).apply(
        build_topology(manifests)
    )
    return moto


def fifo_pair(server: MotoServer) -> tuple[Queues, str, str]:
    sqs = server.client("sqs")
    for name in ("t-src.fifo", "t-src-dlq.fifo"):
        sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})
    return Queues(sqs), "t-src.fifo", "t-src-dlq.fifo"


def fill_fifo(queues: Queues, dlq: str) -> None:
    """Groups a, b, c with four messages each, sent interleaved."""
    for n in range(4):
        for group in "abc":
            queues.sqs.send_message(
                QueueUrl=queues.url(dlq),
                MessageBody=f"{group}{n}",
                MessageGroupId=group,
                MessageDeduplicationId=f"{group}{n}",
            )


def receive_all(queues: Queues, name: str) -> list[str]:
    bodies: list[str] = []
    while True:
        batch = queues.receive(name, visibility=30)
        if not batch:
            return bodies
        bodies += [m.body for m in batch]
        queues.delete(name, batch)


def by_group(bodies: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for body in bodies:
        groups.setdefault(body[0], []).append(body)
    return groups


def test_a_fifo_replay_keeps_group_order_and_holds_a_group_behind_an_unselected_message(
    moto: MotoServer,
) -> None:
    moto.reset()
    queues, source, dlq = fifo_pair(moto)
    fill_fifo(queues, dlq)
    report = move_messages(
        queues,
        dlq,
        replay_hand_over(queues, source, fifo=True),
        select=lambda m: m.body != "b2",
        fifo=True,
        visibility=5,
    )
    assert len(report.moved) == 10
    assert report.skipped == 1
    moved = by_group(receive_all(queues, source))
    assert moved == {
        "a": ["a0", "a1", "a2", "a3"],
        "b": ["b0", "b1"],
        "c": ["c0", "c1", "c2", "c3"],
    }
    assert receive_all(queues, dlq) == ["b2", "b3"]


def test_a_failed_hand_over_leaves_the_message_and_the_rest_of_its_group_in_the_dlq(
    moto: MotoServer,
) -> None:
    moto.reset()
    queues, source, dlq = fifo_pair(moto)
    fill_fifo(queues, dlq)
    send = replay_hand_over(queues, source, fifo=True)

    def flaky(letters: Sequence[DeadLetter]) -> dict[str, str]:
        refused = {m.message_id: "refused" for m in letters if m.body == "a1"}
        problems = send([m for m in letters if m.message_id not in refused])
        return {**problems, **refused}

    report = move_messages(queues, dlq, flaky, fifo=True, visibility=5)
    assert list(report.failed.values()) == ["refused"]
    assert not report.complete
    assert by_group(receive_all(queues, source)) == {
        "a": ["a0"],
        "b": ["b0", "b1", "b2", "b3"],
        "c": ["c0", "c1", "c2", "c3"],
    }
    assert receive_all(queues, dlq) == ["a1", "a2", "a3"]


def test_purge_with_export_then_import_restores_bodies_and_attributes_exactly(
    aws: MotoServer, tmp_path: Path
) -> None:
    queues = Queues(aws.client("sqs"))
    attributes: dict[str, Any] = {
        "replication.reason": {"DataType": "String", "StringValue": "event x: bad"},
        "trace": {"DataType": "String.trace", "StringValue": "ü 🙂"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff\x10"},
        "weight": {"DataType": "Number", "StringValue": "-1.250"},
    }
    for n in range(23):
        queues.sqs.send_message(
            QueueUrl=queues.url(DLQ),
            MessageBody=f'{{"n": {n}, "s": "\\u00e9"}}',
            MessageAttributes=attributes,
        )
    before = {m.body: m.attributes for m in queues.scan(DLQ).letters}
    assert len(before) == 23
    archive = tmp_path / "purged.jsonl"
    code, out, err = cli("dlq", "purge", "--service", "orders", "--export", str(archive), "--yes")
    assert code == 0, out + err
    assert "removed 23" in out
    assert queues.depth(DLQ).total == 0
    assert len(read_archive(archive)) == 23
    code, out, err = cli("dlq", "import", str(archive))
    assert code == 0, out + err
    after = {m.body: m.attributes for m in queues.scan(DLQ).letters}
    assert after == before


def test_purge_by_filter_deletes_only_the_matching_messages(aws: MotoServer) -> None:
    queues = Queues(aws.client("sqs"))
    for n in range(6):
        reason = "event x: spoofed" if n % 2 else "event y: not valid JSON"
        queues.sqs.send_message(
            QueueUrl=queues.url(DLQ),
            MessageBody=f"body {n}",
            MessageAttributes={"replication.reason": {"DataType": "String", "StringValue": reason}},
        )
    code, out, err = cli(
        "dlq", "purge", "--service", "orders", "--reason", "spoofed", "--force", "--yes"
    )
    assert code == 0, out + err
    assert sorted(m.body for m in queues.scan(DLQ).letters) == ["body 0", "body 2", "body 4"]


def test_list_without_the_database_says_where_the_missing_reasons_are(aws: MotoServer) -> None:
    queues = Queues(aws.client("sqs"))
    queues.sqs.send_message(QueueUrl=queues.url(DLQ), MessageBody="moved by SQS")
    code, out, err = cli("dlq", "list", "--service", "orders")
    assert code == 0, out + err
    assert "unknown" in out
    assert "ORDERS_DATABASE_URL" in err


@pytest.mark.parametrize("command", ["list", "show", "replay", "export", "import", "purge"])
def test_every_dlq_command_has_help_with_an_example(command: str) -> None:
    code, out, _ = cli("dlq", command, "--help")
    assert code == 0
    assert "Example: replication dlq " + command in out.replace("\n", " ")


def test_errors_are_clear_and_exit_codes_say_what_to_do(aws: MotoServer, tmp_path: Path) -> None:
    code, _, err = cli("dlq", "list", "--service", "nobody")
    assert (code, "unknown" in err or "not declared" in err) == (1, True)
    code, _, err = cli("dlq", "list", "--service", "crm")
    assert code == 1
    assert "mirrors nothing" in err
    code, _, err = cli("dlq", "show", "--service", "orders", "--prefix", "prod")
    assert code == 1
    assert "queue prod-orders--" in err
    assert "-dlq does not exist" in err
    code, _, err = cli("dlq", "show", "--service", "orders", "--since", "yesterday")
    assert code == 1
    assert "not a time" in err
    code, _, err = cli("dlq", "replay", "--service", "orders", "--dry-run")
    assert code == 1
    assert "ORDERS_DATABASE_URL" in err
    code, _, err = cli("dlq", "replay", "--service", "orders", "--rate", "0")
    assert code == 2
    code, _, err = cli("dlq", "purge", "--service", "orders")
    assert code == 2
    assert "--export" in err
    queues = Queues(aws.client("sqs"))
    queues.sqs.send_message(QueueUrl=queues.url(DLQ), MessageBody="kept")
    code, _, err = cli("dlq", "purge", "--service", "orders", "--force")
    assert code == 1
    assert "--yes" in err
    existing = tmp_path / "taken.jsonl"
    existing.write_text("")
    code, _, err = cli("dlq", "export", "--service", "orders", "--out", str(existing))
    assert code == 1
    assert "--overwrite" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "replication.dlq/1", "queue": "q", "message_id": "m"}\nnot json\n')
    code, _, err = cli("dlq", "import", str(bad))
    assert code == 1
    assert "line 1: body must be a string" in err
    assert "line 2: not JSON" in err
    assert [m.body for m in queues.scan(DLQ).letters] == ["kept"]


def test_an_endpoint_that_does_not_answer_and_missing_credentials_exit_3(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, _, err = cli("dlq", "list")
    assert code == 3
    assert "http://127.0.0.1:9 does not answer" in err
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, _, err = cli("dlq", "list")
    assert code == 3
    assert "no AWS credentials" in err


# -- the pure parts ---------------------------------------------------------------------


def test_times_are_iso_or_durations_ago() -> None:
    now = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)
    assert parse_when("2h", now=now) == dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)
    assert parse_when("2026-11-26T10:00:00", now=now) == dt.datetime(
        2026, 11, 26, 10, tzinfo=dt.UTC
    )
    with pytest.raises(ValueError, match="not a time"):
        parse_when("last week")


def test_reasons_that_differ_only_in_ids_and_values_group_together() -> None:
    one = reason_summary("event 3f2a0c1e-0000-4000-8000-000000000001: field 'email': bad 'x@'")
    two = reason_summary("event 9b1c0c1e-0000-4000-8000-000000000002: field 'email': bad 'y@'")
    assert one == two == "field <value>: bad <value>"


def test_a_selection_needs_every_condition() -> None:
    from replication.contracts import registry
    from replication.dlq.messages import describe

    info = registry.get("crm.customer", 1)
    letter = DeadLetter(
        "dlq",
        "m1",
        "",
        "{}",
        {"replication.reason": {"DataType": "String", "StringValue": "Spoofed topic"}},
        {"SentTimestamp": "1795000000000"},
    )
    item = describe(letter, "q", info)
    assert Selection(reason="spoofed").matches(item)
    assert not Selection(reason="spoofed", entity="catalog.product").matches(item)
    assert Selection(entity="crm.customer v1", message_ids=frozenset({"m1"})).matches(item)
    sent = letter.sent_at
    assert sent is not None
    assert not Selection(since=sent + dt.timedelta(seconds=1)).matches(item)


def test_the_rate_limit_spaces_messages_evenly() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limit = RateLimit(5, clock=lambda: clock[0], sleep=sleep)
    assert limit.batch == 5
    for _ in range(4):
        limit.wait(5)
    assert clock[0] == pytest.approx(3.0)  # 20 messages at 5/s: the last 5 start at 3 s
    with pytest.raises(ValueError, match="positive"):
        RateLimit(0)


def test_the_readme_dlq_example_runs(aws: MotoServer) -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## On call: dead-letter queues", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    script = block.group(1).replace(".venv/bin/replication", f"{sys.executable} -m replication.cli")
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=aws.env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "dev-orders--crm-customer-v1-dlq" in done.stdout


def test_a_replayed_message_keeps_its_attributes_within_the_limit_of_ten() -> None:
    from replication.dlq.messages import replay_attributes

    own = {f"a{n}": {"DataType": "String", "StringValue": str(n)} for n in range(10)}
    full = DeadLetter("dlq", "m", "", "{}", own)
    assert replay_attributes(full) == own
    ours = {"replication.reason": {"DataType": "String", "StringValue": "bad"}}
    letter = DeadLetter("dlq", "m", "", "{}", {**ours, "a0": own["a0"]})
    assert replay_attributes(letter) == {
        "a0": own["a0"],
        "replication.replays": {"DataType": "Number", "StringValue": "1"},
    }


def test_a_message_is_read_as_its_consumer_reads_it(aws: MotoServer) -> None:
    from tests.documents import customer, customer_key, text

    queues = Queues(aws.client("sqs"))
    queues.sqs.send_message(  # a field the consumer's contracts do not know yet
        QueueUrl=queues.url(DLQ),
        MessageBody=text(customer(7, loyalty_points=12)),
        MessageAttributes={
            "replication.reason": {"DataType": "String", "StringValue": "database down"}
        },
    )
    code, out, err = cli("dlq", "show", "--service", "orders", "--json")
    assert code == 0, out + err
    [shown] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert shown["key"] == customer_key(7)
    assert (shown["decodes"], shown["problem"]) == (True, None)
    # A field the contract does not declare may hold anything: masked unless asked for.
    assert shown["event"]["data"]["loyalty_points"] == "***"
    assert shown["event"]["data"]["name"] == "Customer 7"
    code, out, err = cli("dlq", "show", "--service", "orders", "--json", "--show-pii")
    assert code == 0, out + err
    [shown] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert shown["event"]["data"]["loyalty_points"] == 12


def test_a_body_nested_deeply_is_listed_shown_and_exported_not_a_crash(
    aws: MotoServer, tmp_path: Path
) -> None:
    from replication.payloads import POINTER_CLASS

    queues = Queues(aws.client("sqs"))
    body = f'["{POINTER_CLASS}", ' + "[" * 1200 + "]" * 1200 + "]"
    queues.sqs.send_message(QueueUrl=queues.url(DLQ), MessageBody=body)
    exported = tmp_path / "deep.jsonl"
    for command in (["list"], ["show"], ["export", "--out", str(exported)]):
        code, out, err = cli("dlq", *command, "--service", "orders")
        assert code == 0, out + err
        assert "Traceback" not in err
    [line] = exported.read_text().splitlines()
    assert json.loads(line)["body"] == body
