"""An HTTP proxy in front of moto that adds what moto leaves out of SQS redrive.

When SQS moves a message to a DLQ after ``maxReceiveCount`` receives, a
``ReceiveMessage`` from the DLQ returns it with the system attribute
``DeadLetterQueueSourceArn`` (the queue it came from). moto moves the message
but never sets that attribute. This proxy watches the ``ReceiveMessage``
answers going through it (SQS's JSON protocol): a message returned by one
queue after another returned it was moved by redrive, since SQS keeps the
message id when it moves a message and a message sent anew gets a new one;
the proxy then adds the attribute, as SQS does. Everything else passes
through unchanged.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.aws import ACCOUNT, REGION

_RECEIVE = "AmazonSQS.ReceiveMessage"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _queue_arn(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


@contextmanager
def redrive_proxy(upstream: str) -> Iterator[str]:
    """Serve a proxy of the SQS endpoint ``upstream`` on a free local port; yield its URL."""
    first_queue: dict[str, str] = {}  # message id -> ARN of the first queue that returned it
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests read their own output

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            request = urllib.request.Request(
                upstream + self.path, data=body, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, answer = response.status, response.read()
                    answer_headers = list(response.headers.items())
            except urllib.error.HTTPError as exc:
                status, answer, answer_headers = exc.code, exc.read(), list(exc.headers.items())
            if self.headers.get("X-Amz-Target") == _RECEIVE and status == 200 and body:
                answer = self._redriven(json.loads(body), answer)
            self.send_response(status)
            for name, value in answer_headers:
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def _redriven(self, request: dict[str, Any], answer: bytes) -> bytes:
            queue = _queue_arn(str(request.get("QueueUrl", "")))
            document = json.loads(answer or b"{}")
            with lock:
                for message in document.get("Messages", []):
                    source = first_queue.setdefault(message["MessageId"], queue)
                    if source != queue:
                        message.setdefault("Attributes", {})["DeadLetterQueueSourceArn"] = source
            return json.dumps(document).encode()

        do_GET = do_POST = _forward  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
