"""The product as a service team meets it: the wheel, installed into a fresh virtualenv.

The wheel is built from this tree and installed (not editable) into a new
virtualenv in an empty temporary folder. docs/getting-started.md is then run
block by block, as a reader pastes it: ``--version``, the demo, ``init`` of an
owner and a consumer of an entity no example uses, migrations on PostgreSQL,
topology on a moto server, a change relayed and applied. Then the relay and
apply Lambda handlers start from a function's folder with only the
environment the template documents, under ``python -I`` (no current folder,
no PYTHONPATH on ``sys.path``), and must find their contracts on their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from replication.consumer.runner import QueueSource, to_lambda_record
from tests.aws import CREDENTIALS, REGION, moto_server
from tests.databases import POSTGRES_URL
from tests.paths import ROOT

GUIDE = ROOT / "docs" / "getting-started.md"
GUIDE_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMAS = ("shipping", "billing")
TOPOLOGY_APPLY = ("topology", "apply", "--manifests", "shipping", "billing", "--prefix", "dev")

pytestmark = pytest.mark.postgresql


@dataclass
class Installed:
    """The guide's folder after the guide ran, and what it printed."""

    folder: Path
    wheel: Path
    output: str
    written_under_venv: list[str]

    @property
    def python(self) -> Path:
        return self.folder / ".venv" / "bin" / "python"

    @property
    def command(self) -> str:
        return str(self.folder / ".venv" / "bin" / "replication")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def guide_blocks() -> list[str]:
    """The guide's shell blocks, in order."""
    return re.findall(r"```sh\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


def _drop_schemas() -> None:
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql:", "postgresql+psycopg2:", 1))
    with engine.begin() as connection:
        for schema in SCHEMAS:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    engine.dispose()


def _build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [wheel] = out.glob("replication-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this tree, as a release would build it."""
    return _build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Run the guide in an empty folder with the wheel; stop what it started."""
    folder = tmp_path_factory.mktemp("guide")
    _drop_schemas()
    port = str(_free_port())
    blocks = guide_blocks()
    # The guide runs as written, with REPLICATION_WHEEL pointing at the wheel just built
    # (the database URL and the emulator's port replaced when they differ here).
    install = blocks[0]
    assert "$REPLICATION_WHEEL" in install, "the guide's first block must install the wheel"
    marker = folder / ".installed"
    script = "\n".join(
        [
            "set -euo pipefail",
            install,
            f"touch {marker}",
            *(b.replace(GUIDE_URL, POSTGRES_URL).replace("5000", port) for b in blocks[1:]),
        ]
    )
    env = {
        "REPLICATION_WHEEL": str(wheel),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "REQUESTS_CA"))},
    }
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
        # The emulator the guide starts in the background, if the guide stopped early.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    assert process.returncode == 0, output[-6000:]
    written = subprocess.run(
        ["find", str(folder / ".venv"), "-newer", str(marker), "-not", "-type", "d"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    yield Installed(folder, wheel, output, written)
    _drop_schemas()


def test_the_wheel_holds_only_replication_and_all_of_it(wheel: Path) -> None:
    """Names at the top of the wheel; every module of the tree; the demo's lines inside."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = next(n for n in names if n.endswith("top_level.txt"))
        assert archive.read(top_level).decode().split() == ["replication"]
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"replication", "replication-0.1.0.dist-info"}
    source = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "replication").rglob("*")
        if p.suffix in (".py", ".mako") and "__pycache__" not in p.parts
    }
    assert source <= set(names), sorted(source - set(names))
    for shipped in (
        "replication/demo/lines/contracts/crm.py",
        "replication/demo/lines/examples/orders/replication.yaml",
        "replication/demo/lines/examples/crm/service.py",
        "replication/migrations/template/env.py",
        "replication/migrations/template/script.py.mako",
    ):
        assert shipped in names


def test_the_getting_started_guide_runs_from_an_empty_folder(installed: Installed) -> None:
    out = installed.output
    assert re.search(r"^replication 0\.1\.0$", out, re.M), out[:2000]
    assert "every mirror equals its owner" in out
    # The owner's and the consumer's revisions are in their own folders.
    [outbox] = (installed.folder / "shipping" / "migrations" / "versions" / "shipping").glob("*.py")
    assert "op.create_table('replication_outbox'" in outbox.read_text()
    [mirror] = (installed.folder / "billing" / "migrations" / "versions" / "billing").glob("*.py")
    assert "op.create_table('parcel_mirror'" in mirror.read_text()
    assert "shipping: the database matches the declarations" in out
    assert "billing: the database matches the declarations" in out
    # The change reached billing's mirror, newest version per key.
    assert re.search(r"^\s*1 \| Blue box, wrapped\s*\|\s*2$", out, re.M), out[-3000:]
    assert re.search(r"^\s*2 \| Red crate\s*\|\s*1$", out, re.M), out[-3000:]
    # Nothing was written into the installed package, nor anywhere in the virtualenv.
    assert installed.written_under_venv == []


def test_init_refuses_to_overwrite_and_writes_nothing(installed: Installed) -> None:
    shipping = installed.folder / "shipping"
    before = (shipping / "replication.yaml").read_text()
    done = subprocess.run(
        [installed.command, "init", "--service", "shipping", "--owns", "shipping.crate"],
        cwd=shipping,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "not overwriting shipping_contracts.py, replication.yaml" in done.stderr
    assert (shipping / "replication.yaml").read_text() == before
    assert not (shipping / "shipping_contracts.py").read_text().count("Crate")


def _function_folder(installed: Installed, service: str, modules: list[Path]) -> Path:
    """A function's folder as a package puts it: <service>/replication.yaml and the contracts."""
    root = installed.folder / f"function-{service}"
    (root / service).mkdir(parents=True)
    (root / service / "replication.yaml").write_text(
        (installed.folder / service / "replication.yaml").read_text()
    )
    for module in modules:
        (root / service / module.name).write_text(module.read_text())
    return root


_INVOKE = """
import json, sys, time, importlib
module = importlib.import_module(sys.argv[1])
class Context:  # what the handlers read of Lambda's context: a deadline 4 s away
    function_name = "f"
    aws_request_id = "r"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    memory_limit_in_mb = 512
    deadline = time.monotonic() + 4
    def get_remaining_time_in_millis(self):
        return max(0, int((self.deadline - time.monotonic()) * 1000))
print(json.dumps(module.lambda_handler(json.loads(sys.stdin.read()), Context())))
"""


def _invoke(
    installed: Installed, root: Path, handler: str, event: object, env: dict[str, str]
) -> dict[str, object]:
    done = subprocess.run(
        [str(installed.python), "-I", "-c", _INVOKE, handler],
        cwd=root,
        input=json.dumps(event),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_relay_and_apply_functions_find_their_contracts_with_only_their_environment(
    installed: Installed,
) -> None:
    shipping_contracts = installed.folder / "shipping" / "shipping_contracts.py"
    relay_root = _function_folder(installed, "shipping", [shipping_contracts])
    apply_root = _function_folder(installed, "billing", [shipping_contracts])
    shipping_url = f"{POSTGRES_URL}?options=-csearch_path%3Dshipping"
    billing_url = f"{POSTGRES_URL}?options=-csearch_path%3Dbilling"
    with moto_server() as moto:
        aws = {**CREDENTIALS, "AWS_ENDPOINT_URL": moto.endpoint, "AWS_REGION": REGION}
        base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **aws}
        applied = subprocess.run(
            [installed.command, *TOPOLOGY_APPLY],
            cwd=installed.folder,
            env=base,
            capture_output=True,
            text=True,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
        # The owner's own code records a change (its folder is its working directory).
        recorded = subprocess.run(
            [str(installed.python), "-c", _RECORD],
            cwd=installed.folder / "shipping",
            env={**base, "SHIPPING_DATABASE_URL": shipping_url},
            capture_output=True,
            text=True,
            check=False,
        )
        assert recorded.returncode == 0, recorded.stderr

        relay_env = {
            **base,
            "REPLICATION_MANIFEST": "shipping/replication.yaml",
            "REPLICATION_PREFIX": "dev",
            "SHIPPING_DATABASE_URL": shipping_url,
        }
        relayed = _invoke(installed, relay_root, "replication.outbox.function", {}, relay_env)
        assert relayed["published"] == 1, relayed

        sqs = moto.client("sqs")
        url = sqs.get_queue_url(QueueName="dev-billing--shipping-parcel-v1")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        )["Messages"]
        source = QueueSource("dev-billing--shipping-parcel-v1", url, arn, REGION)
        event = {"Records": [to_lambda_record(m, source) for m in messages]}
        apply_env = {
            **base,
            "REPLICATION_MANIFEST": "billing/replication.yaml",
            "REPLICATION_PREFIX": "dev",
            "BILLING_DATABASE_URL": billing_url,
        }
        response = _invoke(installed, apply_root, "replication.consumer.handler", event, apply_env)
        assert response == {"batchItemFailures": []}

    engine = sa.create_engine(billing_url.replace("postgresql:", "postgresql+psycopg2:", 1))
    with engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT name, _version FROM parcel_mirror WHERE id = 3"
        ).one()
    engine.dispose()
    assert tuple(row) == ("Green tube", 1)


_RECORD = """
import os
import sqlalchemy as sa
from replication.outbox import record_upsert
from shipping_contracts import Parcel
engine = sa.create_engine(os.environ["SHIPPING_DATABASE_URL"])
with engine.begin() as connection:
    record_upsert(connection, Parcel(id=3, name="Green tube"), version=1)
"""
