"""A function's artifact run as Lambda runs it: awslambdaric against a small Runtime API.

The Runtime API (what Lambda's service gives the runtime interface client at
``$AWS_LAMBDA_RUNTIME_API``) hands out the invocations queued here, one per
``GET /2018-06-01/runtime/invocation/next``, and keeps what the function posts
back to ``.../response`` or ``.../error`` (and ``/runtime/init/error`` when the
handler cannot even load). The client runs in a virtualenv holding only
``awslambdaric``, from the unzipped artifact as its working directory, so
nothing of this checkout is on its ``sys.path``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class Outcome:
    """What the function answered to one invocation."""

    kind: str  # "response" or "error"
    body: Any


class RuntimeApi:
    """The Lambda Runtime API, serving queued invocations on a local port."""

    def __init__(self) -> None:
        self.invocations: queue.Queue[tuple[str, Any, float]] = queue.Queue()
        self.outcomes: dict[str, queue.Queue[Outcome]] = {}
        self.init_errors: list[Any] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._send(404, b"{}", {})
                    return
                request_id, event, timeout = api.invocations.get()  # blocks, as Lambda does
                deadline_ms = int((time.time() + timeout) * 1000)
                self._send(
                    200,
                    json.dumps(event).encode(),
                    {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": (
                            "arn:aws:lambda:us-east-1:123456789012:function:under-test"
                        ),
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                document = json.loads(body) if body else None
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts[:2] == ["init", "error"]:
                    api.init_errors.append(document)
                elif len(parts) == 3 and parts[0] == "invocation":
                    api.outcomes.setdefault(parts[1], queue.Queue()).put(
                        Outcome(parts[2], document)
                    )
                self._send(202, b"{}", {"Content-Type": "application/json"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event: Any, *, timeout: float, wait: float = 120) -> Outcome:
        """Queue one invocation and wait for the function's answer."""
        request_id = str(uuid.uuid4())
        self.outcomes[request_id] = queue.Queue()
        self.invocations.put((request_id, event, timeout))
        try:
            return self.outcomes[request_id].get(timeout=wait)
        except queue.Empty:
            raise AssertionError(
                f"no answer within {wait} s; init errors: {self.init_errors}"
            ) from None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def client_venv(folder: Path) -> Path:
    """A virtualenv with only awslambdaric (from the package index); its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "awslambdaric",
        ],
        check=True,
        capture_output=True,
    )
    return python


def unzip(artifact: Path, folder: Path) -> Path:
    """The artifact unzipped into an empty folder, as Lambda lays out /var/task."""
    folder.mkdir(parents=True)
    with zipfile.ZipFile(artifact) as archive:
        archive.extractall(folder)
    return folder


def start_function(
    python: Path, task_root: Path, handler: str, environment: dict[str, str], api: RuntimeApi
) -> subprocess.Popen[str]:
    """``python -m awslambdaric HANDLER`` in the task root, with exactly ``environment``
    plus what Lambda's runtime sets itself."""
    runtime = {
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "LAMBDA_TASK_ROOT": str(task_root),
        "_HANDLER": handler,
        "AWS_LAMBDA_FUNCTION_NAME": "under-test",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
    }
    return subprocess.Popen(
        [str(python), "-m", "awslambdaric", handler],
        cwd=task_root,
        env={**environment, **runtime},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
