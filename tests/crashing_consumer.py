"""A consumer process that dies by SIGKILL right after its first batch committed.

The handler has applied and committed the batch; the runner has not deleted
the messages yet. Run as ``python -m tests.crashing_consumer <orders database URL>``
with the environment pointing boto3 at the moto server.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import contracts  # noqa: F401  (registers the example contracts)
from replication.consumer.database import spec_from_url
from replication.consumer.runner import RunnerSettings
from replication.consumer.wiring import ConsumerSettings, build_runner
from replication.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    manifest = load_manifest(ROOT / "examples" / "orders" / "replication.yaml")
    runner = build_runner(
        manifest,
        ConsumerSettings(log_level="ERROR", metrics=False),
        RunnerSettings(batch_size=10, wait_time=1, visibility_timeout=2),
        spec=spec_from_url(sys.argv[1]),
    )
    handler = runner.handler

    def commit_then_die(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = handler(event, context)
        print(f"committed {len(event['Records'])} records", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return response

    runner.handler = commit_then_die
    runner.drain()


if __name__ == "__main__":
    main()
