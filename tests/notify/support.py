"""Real receivers for the notifier tests: an aiosmtpd server and a signed-webhook receiver."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from promod.notify.webhook import verify_signature

SECRET = "s3cret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailSink:
    """aiosmtpd handler: keeps every message; RCPT to a ``refuse`` address gets 550."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []  # each message's bytes exactly as received
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse = refuse
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.raw.append(bytes(envelope.original_content or envelope.content))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"

    def event_ids(self) -> list[str]:
        with self.lock:
            return [str(m["Promod-Event-Id"]) for m in self.messages]


class SmtpServer:
    """A real SMTP server on 127.0.0.1:port that can be started and stopped."""

    def __init__(self, port: int | None = None, sink: MailSink | None = None) -> None:
        self.port = port or free_port()
        self.sink = sink or MailSink()
        self.controller: Controller | None = None

    def start(self) -> SmtpServer:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@dataclass
class Hit:
    at: float
    event_id: str
    body: dict[str, Any]
    signature_ok: bool
    status: int


@dataclass
class Receiver:
    """An HTTP server in a thread: verifies the signature, answers from a script."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (200, {})
    delay: float = 0.0
    secret: str = SECRET
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                ok = verify_signature(
                    receiver.secret.encode(), self.headers.get("Promod-Signature", ""), body
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    status, headers = (
                        receiver.script.pop(0) if receiver.script else receiver.default
                    )
                    receiver.hits.append(
                        Hit(
                            time.monotonic(),
                            self.headers.get("Promod-Event-Id", ""),
                            json.loads(body),
                            ok,
                            status,
                        )
                    )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[str]:
        with self.lock:
            return [h.event_id for h in self.hits if 200 <= h.status < 300]
