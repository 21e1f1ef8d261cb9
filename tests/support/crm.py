"""A real local HTTP server playing a JSON REST CRM, for the ``http`` CRM connector.

crm = CrmServer(records=[recipient("c1"), ...], page_size=2)
crm.url            # http://127.0.0.1:PORT/api
crm.requests       # [("GET", "/api/recipients?limit=2"), ("POST", "/api/suppressions"), ...]
crm.posted         # {"/api/suppressions": [body, ...]}
crm.fail(500, 429) # the next two requests answer 500, then 429 (Retry-After: 1)
crm.block_page(2)  # hold the request for page 2 until crm.release()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "crm-test-token"


def recipient(cid: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": cid,
        "email": f"{cid}@example.org",
        "opt_in_id": f"oi-{cid}-1",
        "description": "newsletter opt-in",
        "media_type": "email",
        "entity_type": "contact",
        "entity_id": f"ent-{cid}",
        "consent": "marketing_email",
    }
    record.update(fields)
    return record


class CrmServer:
    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.records = list(records)
        self.requests: list[tuple[str, str]] = []
        self.posted: dict[str, list[Any]] = {}
        self.auth: list[str | None] = []
        self.signatures: list[tuple[str | None, str]] = []  # (header, signed path) of GETs
        self._failures: list[int] = []
        self._blocked_page: int | None = None
        self.page_waiting = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(
                self, status: int, body: Any = None, headers: dict[str, str] | None = None
            ) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _failure(self) -> bool:
                with server._lock:
                    status = server._failures.pop(0) if server._failures else None
                if status is None:
                    return False
                headers = {"Retry-After": "1"} if status == 429 else {}
                self._answer(status, {"error": "induced"}, headers)
                return True

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(("GET", self.path))
                    server.auth.append(self.headers.get("Authorization"))
                    server.signatures.append((self.headers.get("Promod-Signature"), self.path))
                if self._failure():
                    return
                query = parse_qs(urlsplit(self.path).query)
                limit = int(query.get("limit", ["100"])[0])
                start = int(query.get("cursor", ["0"])[0])
                page = start // limit + 1
                if server._blocked_page == page:
                    server.page_waiting.set()
                    server._release.wait(60)
                records = server.records[start : start + limit]
                following = start + limit if start + limit < len(server.records) else None
                self._answer(
                    200, {"records": records, "next": None if following is None else str(following)}
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                path = urlsplit(self.path).path
                with server._lock:
                    server.requests.append(("POST", path))
                    server.auth.append(self.headers.get("Authorization"))
                if self._failure():
                    return
                with server._lock:
                    server.posted.setdefault(path, []).append(body)
                self._answer(200, {"ok": True})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def fail(self, *statuses: int) -> None:
        with self._lock:
            self._failures.extend(statuses)

    def block_page(self, page: int) -> None:
        self._blocked_page = page

    def release(self) -> None:
        self._blocked_page = None
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
