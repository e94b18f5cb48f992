"""A proxy in front of the AWS emulator that halts a process at a chosen request.

A test points a child process's ``AWS_ENDPOINT_URL`` at the gate. Every
request is passed on to the emulator in the order it comes (the process makes
one at a time). Once armed with a :class:`Halt`, the gate waits for the first
request of the trigger action (``SendMessageBatch``: the process has started
handing messages over), counts the requests from there, and holds the chosen
one: either before the emulator sees it, or after the emulator did it and
before the process hears back. The test then kills the process, so the kill
lands between two known requests, on evidence of what the process did rather
than after a guess of how long it takes, however loaded the machine.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_NOT_PASSED_ON = {"host", "content-length", "connection", "accept-encoding"}
_NOT_PASSED_BACK = {"content-length", "connection", "transfer-encoding", "date", "server"}


@dataclass(frozen=True)
class Halt:
    """Hold the ``offset``-th request after the first ``trigger`` one (0: that one itself)."""

    trigger: str
    offset: int
    done: bool
    """Whether the emulator does the held request (the process never hears that it did)."""


class RequestGate:
    """The proxy, on a local port, in front of ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._lock = threading.Lock()
        self._halt: Halt | None = None
        self._countdown: int | None = None
        self._held: str | None = None
        self._halted = threading.Event()
        self._released = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = str(self.headers.get("X-Amz-Target", "")).rpartition(".")[2]
                hold = gate._hold(action)
                if hold is not None and not hold.done:
                    gate._wait_for_the_kill(action)
                    return
                answer = gate._pass_on(self.path, dict(self.headers.items()), body)
                if hold is not None:
                    gate._wait_for_the_kill(action)
                    return
                status, headers, content = answer
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def arm(self, halt: Halt) -> None:
        """Halt the next process at ``halt`` (requests before it pass)."""
        with self._lock:
            self._halt, self._countdown, self._held = halt, None, None
            self._halted.clear()
            self._released.clear()

    def wait_halted(self, process: subprocess.Popen[Any], timeout: float = 120) -> str | None:
        """The action held once ``process`` reached the halt; None if it ended before."""
        deadline = time.monotonic() + timeout
        while not self._halted.wait(0.05):
            if process.poll() is not None:
                return None
            if time.monotonic() > deadline:
                raise AssertionError(f"the process did not reach {self._halt} in {timeout} s")
        return self._held

    def release(self) -> None:
        """Let go of the held request (its process is dead); pass everything on again."""
        with self._lock:
            self._halt = None
        self._released.set()

    def close(self) -> None:
        """Stop serving."""
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def _hold(self, action: str) -> Halt | None:
        """The armed halt if this request is the one to hold."""
        with self._lock:
            halt = self._halt
            if halt is None or self._held is not None:
                return None
            if self._countdown is None:
                if action != halt.trigger:
                    return None
                self._countdown = halt.offset
            if self._countdown > 0:
                self._countdown -= 1
                return None
            self._held = action
            return halt

    def _wait_for_the_kill(self, action: str) -> None:
        self._halted.set()
        if not self._released.wait(300):
            raise AssertionError(f"{action} held for five minutes: nobody killed its process")

    def _pass_on(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        request = urllib.request.Request(
            self.upstream + path,
            data=body,
            method="POST",
            headers={k: v for k, v in headers.items() if k.lower() not in _NOT_PASSED_ON},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, answer, content = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:  # an AWS error: the process must see it as is
            status, answer, content = error.code, error.headers, error.read()
        kept = [(k, v) for k, v in answer.items() if k.lower() not in _NOT_PASSED_BACK]
        return status, kept, content
