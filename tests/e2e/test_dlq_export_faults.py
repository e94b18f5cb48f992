"""A disk that fails under ``dlq export --remove`` and ``dlq purge --export``: no message
leaves its DLQ unless its line is confirmed on disk; export files are private (0600).

The failures are injected at the OS calls (``os.fsync``, ``os.write``) of the export file
only; SQS is a moto server, as in ``test_dlq``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from replication.dlq.archive import ArchiveWriteError, ExportFile, read_archive
from replication.dlq.queues import Queues
from replication.manifest import load_manifests
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from tests.aws import ACCOUNT, REGION, MotoServer, moto_server
from tests.e2e_support import ROOT
from tests.e2e_support import run_cli as cli

DLQ = "dev-orders--crm-customer-v1-dlq"
MESSAGES = 23

REMOVING = {
    "export --remove": ("dlq", "export", "--service", "orders", "--remove", "--out"),
    "purge --export": ("dlq", "purge", "--service", "orders", "--yes", "--export"),
}


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


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def fill(queues: Queues, count: int = MESSAGES) -> set[str]:
    """``count`` dead letters in the DLQ; their message ids."""
    ids = set()
    for n in range(count):
        sent = queues.sqs.send_message(
            QueueUrl=queues.url(DLQ),
            MessageBody=json.dumps({"n": n, "email": f"person{n}@example.com"}),
            MessageAttributes={
                "replication.reason": {"DataType": "String", "StringValue": "event x: bad"}
            },
        )
        ids.add(sent["MessageId"])
    return ids


def in_dlq(queues: Queues) -> list[str]:
    """Message ids in the DLQ (read, then made visible again)."""
    return [m.message_id for m in queues.scan(DLQ).letters]


def in_file(path: Path) -> list[str]:
    return [m.message_id for m in read_archive(path)]


def lines_of(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def is_export_file(fd: int, path: Path) -> bool:
    return path.exists() and os.path.samestat(os.fstat(fd), os.stat(path))


def fail_fsync_at_line(
    monkeypatch: pytest.MonkeyPatch, path: Path, line: int, code: int
) -> list[int]:
    """fsync of ``path`` fails once the file holds ``line`` lines; returns the line counts
    each successful fsync confirmed."""
    real = os.fsync
    confirmed: list[int] = []

    def fsync(fd: int) -> None:
        if is_export_file(fd, path):
            if lines_of(path) >= line:
                raise OSError(code, os.strerror(code))
            confirmed.append(lines_of(path))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return confirmed


def fail_write_at_line(monkeypatch: pytest.MonkeyPatch, path: Path, line: int, code: int) -> None:
    """Writes to ``path`` stop in the middle of line ``line`` (a short write), then fail."""
    real = os.write
    full = False

    def write(fd: int, data: bytes | memoryview) -> int:
        nonlocal full
        if not is_export_file(fd, path):
            return real(fd, data)
        if full:
            raise OSError(code, os.strerror(code))
        chunk = bytes(data)
        room = line - 1 - lines_of(path)
        if chunk.count(b"\n") <= room:
            return real(fd, chunk)
        full = True
        cut = 0
        for _ in range(room):
            cut = chunk.index(b"\n", cut) + 1
        cut += (chunk.index(b"\n", cut) - cut) // 2  # half of line ``line``
        return real(fd, chunk[:cut])

    monkeypatch.setattr(os, "write", write)


def assert_nothing_unconfirmed_left_the_dlq(
    queues: Queues, path: Path, sent: set[str], confirmed: int
) -> None:
    exported = in_file(path)  # read_archive refuses a partial line
    assert len(exported) == confirmed
    remaining = in_dlq(queues)
    assert len(remaining) == MESSAGES - confirmed
    assert set(remaining) == sent - set(exported)
    assert queues.depth(DLQ).total == MESSAGES - confirmed


@pytest.mark.parametrize("command", list(REMOVING), ids=list(REMOVING))
@pytest.mark.parametrize("line", [15, 1], ids=["after-a-batch", "first-line"])
def test_a_failing_fsync_stops_the_export_and_leaves_every_unconfirmed_message_in_the_dlq(
    aws: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    line: int,
) -> None:
    queues = Queues(aws.client("sqs"))
    sent = fill(queues)
    path = tmp_path / "out.jsonl"
    synced = fail_fsync_at_line(monkeypatch, path, line, errno.EIO)
    code, out, err = cli(*REMOVING[command], str(path))
    confirmed = synced[-1] if synced else 0
    assert confirmed < line
    if line > 10:  # a receive takes at most 10 messages: the first batch was confirmed
        assert confirmed > 0
        assert code == 4, out + err
        assert f"removed {confirmed}" in out
        assert f"the {confirmed} message(s) already removed are only in {path}" in err
    else:
        assert confirmed == 0
        assert code == 1, out + err
    assert f"{path}: fsync failed: Input/output error (EIO)" in err
    assert "still in its DLQ" in err
    assert_nothing_unconfirmed_left_the_dlq(queues, path, sent, confirmed)


@pytest.mark.parametrize("command", list(REMOVING), ids=list(REMOVING))
def test_a_disk_that_fills_up_mid_line_leaves_the_file_with_its_confirmed_lines_only(
    aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    queues = Queues(aws.client("sqs"))
    sent = fill(queues)
    bodies = sorted(m.body for m in queues.scan(DLQ).letters)
    path = tmp_path / "out.jsonl"
    synced = fail_fsync_at_line(monkeypatch, path, MESSAGES + 1, errno.EIO)  # only records
    fail_write_at_line(monkeypatch, path, 14, errno.ENOSPC)
    code, out, err = cli(*REMOVING[command], str(path))
    confirmed = synced[-1]
    assert 0 < confirmed < 14
    assert code == 4, out + err
    assert f"{path}: write failed: No space left on device (ENOSPC)" in err
    assert_nothing_unconfirmed_left_the_dlq(queues, path, sent, confirmed)
    code, out, err = cli("dlq", "import", str(path))  # the file is whole: it imports
    assert code == 0, out + err
    assert sorted(m.body for m in queues.scan(DLQ).letters) == bodies


def test_an_export_without_remove_that_cannot_be_written_fails_and_keeps_every_message(
    aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues = Queues(aws.client("sqs"))
    sent = fill(queues)
    path = tmp_path / "copy.jsonl"
    fail_write_at_line(monkeypatch, path, 5, errno.ENOSPC)
    code, out, err = cli("dlq", "export", "--service", "orders", "--out", str(path))
    assert code == 1, out + err
    assert f"{path}: write failed: No space left on device (ENOSPC)" in err
    assert path.read_bytes() == b""
    assert set(in_dlq(queues)) == sent


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_real_full_device_removes_nothing(aws: MotoServer) -> None:
    queues = Queues(aws.client("sqs"))
    sent = fill(queues)
    code, out, err = cli(
        "dlq", "export", "--service", "orders", "--remove", "--out", "/dev/full", "--overwrite"
    )
    assert code == 1, out + err
    assert "/dev/full: write failed: No space left on device (ENOSPC)" in err
    assert set(in_dlq(queues)) == sent


def test_a_file_system_without_fsync_is_tolerated_with_a_note(
    aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues = Queues(aws.client("sqs"))
    sent = fill(queues)
    path = tmp_path / "out.jsonl"
    fail_fsync_at_line(monkeypatch, path, 1, errno.EINVAL)
    code, out, err = cli("dlq", "export", "--service", "orders", "--remove", "--out", str(path))
    assert code == 0, out + err
    assert "durability could not be confirmed" in err
    assert "Invalid argument (EINVAL)" in err
    assert set(in_file(path)) == sent
    assert in_dlq(queues) == []


@pytest.mark.parametrize(
    ("code", "tolerated"),
    [
        (errno.EIO, False),
        (errno.ENOSPC, False),
        (errno.EDQUOT, False),
        (errno.EROFS, False),  # ext4 after it aborted: the data may be gone
        (errno.EINVAL, True),
        (errno.EOPNOTSUPP, True),
    ],
    ids=["EIO", "ENOSPC", "EDQUOT", "EROFS", "EINVAL", "EOPNOTSUPP"],
)
def test_only_an_fsync_that_is_not_supported_confirms_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, tolerated: bool
) -> None:
    path = tmp_path / "out.jsonl"
    fail_fsync_at_line(monkeypatch, path, 2, code)
    with ExportFile.create(path) as out:
        out.write(["one\n"])
        if tolerated:
            out.write(["two\n"])
            assert out.lines == 2
            assert out.unsynced
        else:
            with pytest.raises(ArchiveWriteError) as failed:
                out.write(["two\n"])
            assert failed.value.lines == 1
            assert failed.value.error.errno == code
            with pytest.raises(ArchiveWriteError):  # a failure is final: no retry
                out.write(["three\n"])
    assert path.read_text() == ("one\ntwo\n" if tolerated else "one\n")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_export_files_are_private_whatever_the_umask(aws: MotoServer, tmp_path: Path) -> None:
    queues = Queues(aws.client("sqs"))
    fill(queues, 3)
    path = tmp_path / "new" / "out.jsonl"
    code, out, err = cli("dlq", "export", "--service", "orders", "--out", str(path))
    assert code == 0, out + err
    assert mode(path) == 0o600
    assert len(in_file(path)) == 3
    code, _, err = cli("dlq", "export", "--service", "orders", "--out", str(path))
    assert code == 1
    assert "--overwrite" in err
    replaced = tmp_path / "old.jsonl"
    replaced.write_text("old content, long enough to be cut off when it is replaced\n")
    replaced.chmod(0o644)
    code, out, err = cli(
        "dlq", "export", "--service", "orders", "--out", str(replaced), "--overwrite"
    )
    assert code == 0, out + err
    assert mode(replaced) == 0o600
    assert len(in_file(replaced)) == 3
    purged = tmp_path / "purged.jsonl"
    code, out, err = cli("dlq", "purge", "--service", "orders", "--export", str(purged), "--yes")
    assert code == 0, out + err
    assert mode(purged) == 0o600


@pytest.mark.parametrize("umask", [0o022, 0o277])
def test_a_new_export_file_is_0600_under_any_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "out.jsonl"
    previous = os.umask(umask)
    try:
        ExportFile.create(path).close()
    finally:
        os.umask(previous)
    assert mode(path) == 0o600


@pytest.mark.usefixtures("umask_022")
def test_the_lines_an_import_could_not_send_are_kept_in_a_private_file(
    aws: MotoServer, tmp_path: Path
) -> None:
    queues = Queues(aws.client("sqs"))
    fill(queues, 1)
    path = tmp_path / "out.jsonl"
    code, out, err = cli("dlq", "purge", "--service", "orders", "--export", str(path), "--yes")
    assert code == 0, out + err
    refused = json.loads(path.read_text())
    refused["attributes"]["bad"] = {"DataType": "Bogus", "StringValue": "x"}  # SQS refuses it
    edited = tmp_path / "edited.jsonl"
    edited.write_text(json.dumps(refused) + "\n")
    code, out, err = cli("dlq", "import", str(edited), "--queue", DLQ)
    assert code == 4, out + err
    failed = tmp_path / "edited.jsonl.failed.jsonl"
    assert mode(failed) == 0o600
    assert [m.message_id for m in read_archive(failed)] == [refused["message_id"]]


def test_an_import_whose_failed_lines_cannot_be_written_says_so(
    aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues = Queues(aws.client("sqs"))
    fill(queues, 1)
    path = tmp_path / "out.jsonl"
    code, out, err = cli("dlq", "purge", "--service", "orders", "--export", str(path), "--yes")
    assert code == 0, out + err
    line = json.loads(path.read_text())
    line["attributes"]["bad"] = {"DataType": "Bogus", "StringValue": "x"}
    path.write_text(json.dumps(line) + "\n")
    failed = tmp_path / "out.jsonl.failed.jsonl"
    fail_write_at_line(monkeypatch, failed, 1, errno.ENOSPC)
    code, out, err = cli("dlq", "import", str(path))
    assert code == 4, out + err
    assert f"{failed}: write failed: No space left on device (ENOSPC)" in err
    assert "line 1:" in err


def test_an_export_file_is_never_written_through_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "someone-elses-file"
    target.write_text("precious\n")
    link = tmp_path / "export.jsonl"
    link.symlink_to(target)

    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        ExportFile.create(link, overwrite=True)

    assert target.read_text() == "precious\n"
