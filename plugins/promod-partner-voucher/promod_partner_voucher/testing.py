"""FakePartner: a real local HTTP server that plays the voucher partner, for tests and demos.

It speaks the API ``PartnerVoucherProvider`` calls (see ``provider.py``), keeps its
vouchers in memory, honours idempotency keys (a replayed key answers the voucher it
minted, never a second one) and can be told to misbehave: answer 500s, 429 with
``Retry-After``, answer slowly, lose an answer after minting, run out of stock,
reject a customer. It runs in a thread on 127.0.0.1 and an ephemeral port, so it
serves sync tests, async tests and a daemon subprocess alike::

    with FakePartner(stock=10) as partner:
        partner.fail_next(2, status=500)
        options = {"base_url": partner.url, "api_key_env": "PARTNER_KEY"}
        env = {"PARTNER_KEY": partner.api_key}
        ...
        assert partner.minted_per_key() == {"17": 1}

From a shell: ``python -m promod_partner_voucher.testing --port 8099 --stock 100``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakePartner", "Fault", "Seen", "Voucher"]


@dataclass
class Voucher:
    """One voucher the partner minted."""

    id: str
    code: str
    key: str  # the Idempotency-Key it was minted for
    customer_ref: str | None
    campaign: str | None
    product: str | None
    amount: str | None
    value: str | None
    currency: str | None
    expires_at: str
    status: str = "issued"  # issued | revoked | redeemed
    request: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Fault:
    """How to answer one request instead of normally.

    ``status`` None answers normally (after ``delay``); ``after_mint`` mints the
    voucher first and then answers the fault, like an answer lost on the way back.
    """

    status: int | None = 500
    retry_after: str | None = None
    delay: float = 0.0
    after_mint: bool = False
    body: dict[str, Any] | None = None
    on: str = "mint"  # mint | revoke | lookup | inventory | any


@dataclass(frozen=True)
class Seen:
    """One request the partner received, with the status it answered."""

    method: str
    path: str
    key: str | None
    status: int
    at: float


class FakePartner:
    """The partner's voucher API on ``self.url``; ``start()``/``stop()`` or ``with``."""

    def __init__(
        self,
        *,
        stock: int | None = None,
        api_key: str | None = "partner-test-key",
        expires_in: float = 30 * 86400,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.stock = stock  # vouchers left; None: unlimited; 0: out of stock
        self.api_key = api_key  # None: no authentication
        self.expires_in = expires_in
        self.delay = 0.0  # seconds every answer waits
        self.reject_customers: set[str] = set()  # customer_refs answered 422 rejected
        self.vouchers: dict[str, Voucher] = {}
        self.by_key: dict[str, str] = {}
        self.requests: list[Seen] = []
        self.mints: list[str] = []  # the key of every voucher minted, in order
        self._faults: deque[Fault] = deque()
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life -------------------------------------------------------------------------

    def start(self) -> FakePartner:
        partner = self

        class Handler(_Handler):
            owner = partner

        self._closing.clear()
        self._server = _Server((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # wakes slow answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakePartner:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake partner is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- misbehaviour -----------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        retry_after: str | int | None = None,
        after_mint: bool = False,
        body: dict[str, Any] | None = None,
        on: str = "mint",
    ) -> None:
        """Answer the next ``count`` requests (of kind ``on``) with ``status``."""
        ra = None if retry_after is None else str(retry_after)
        self.add_faults(
            *[Fault(status, ra, 0.0, after_mint, body, on) for _ in range(count)],
        )

    def slow_next(self, count: int = 1, *, seconds: float, on: str = "mint") -> None:
        """Answer the next ``count`` requests normally but only after ``seconds``."""
        self.add_faults(*[Fault(None, None, seconds, True, None, on) for _ in range(count)])

    def add_faults(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        """Forget the misbehaviour still queued: the partner answers normally again."""
        with self._lock:
            self._faults.clear()

    def redeem(self, voucher_id: str) -> None:
        """The customer used the voucher: it can no longer be revoked."""
        with self._lock:
            self.vouchers[voucher_id].status = "redeemed"

    # -- observations -------------------------------------------------------------------

    def minted_per_key(self) -> dict[str, int]:
        """How many vouchers each idempotency key minted (1 each, or a bug)."""
        with self._lock:
            counts: dict[str, int] = {}
            for key in self.mints:
                counts[key] = counts.get(key, 0) + 1
            return counts

    def issued(self) -> list[Voucher]:
        """Vouchers currently issued (not revoked), in minting order."""
        with self._lock:
            return [v for v in self.vouchers.values() if v.status == "issued"]

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.requests
                if (method is None or s.method == method) and (path is None or s.path == path)
            ]

    # -- the API (called from handler threads) ---------------------------------------

    def _take_fault(self, kind: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.on in (kind, "any"):
                    del self._faults[i]
                    return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._closing.wait(seconds)

    def _voucher_json(self, v: Voucher) -> dict[str, Any]:
        return {
            "id": v.id,
            "code": v.code,
            "expires_at": v.expires_at,
            "status": v.status,
            "remaining": self.stock,
        }

    def _mint(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            existing = self.by_key.get(key)
            if existing is not None:
                voucher = self.vouchers[existing]
                if voucher.request != body:
                    return 422, {
                        "error": "idempotency_mismatch",
                        "message": "this Idempotency-Key was used with another request",
                    }
                return 200, self._voucher_json(voucher)
            customer = body.get("customer_ref")
            if customer in self.reject_customers:
                return 422, {"error": "rejected", "message": "customer not eligible"}
            if self.stock is not None and self.stock <= 0:
                return 409, {"error": "out_of_stock", "message": "no vouchers left"}
            if self.stock is not None:
                self.stock -= 1
            number = next(self._ids)
            expires = datetime.fromtimestamp(time.time() + self.expires_in, UTC)
            voucher = Voucher(
                id=f"v_{number:06d}",
                code=f"PV-{secrets.token_hex(4).upper()}",
                key=key,
                customer_ref=customer,
                campaign=body.get("campaign"),
                product=body.get("product"),
                amount=body.get("amount"),
                value=body.get("value"),
                currency=body.get("currency"),
                expires_at=expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
                request=body,
            )
            self.vouchers[voucher.id] = voucher
            self.by_key[key] = voucher.id
            self.mints.append(key)
            return 201, self._voucher_json(voucher)

    def _revoke(self, voucher_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            voucher = self.vouchers.get(voucher_id)
            if voucher is None:
                return 404, {"error": "not_found", "message": "no such voucher"}
            if voucher.status == "redeemed":
                return 409, {"error": "already_redeemed", "message": "voucher was redeemed"}
            if voucher.status == "issued":
                voucher.status = "revoked"
                if self.stock is not None:
                    self.stock += 1
            return 200, {"id": voucher.id, "status": voucher.status}

    def _lookup(self, key: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            voucher_id = self.by_key.get(key or "")
            if voucher_id is None:
                return 404, {"error": "not_found", "message": "no voucher for this key"}
            return 200, self._voucher_json(self.vouchers[voucher_id])

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request → (status, JSON body, extra headers)."""
        if self.api_key is not None and headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "unauthorized", "message": "bad or missing API key"}, {}
        parts = [p for p in path.split("/") if p]
        if method == "POST" and parts == ["v1", "vouchers"]:
            kind = "mint"
        elif method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "vouchers"]:
            kind = "revoke" if parts[3] == "revoke" else ""
        elif method == "GET" and parts == ["v1", "vouchers"]:
            kind = "lookup"
        elif method == "GET" and parts == ["v1", "inventory"]:
            kind = "inventory"
        else:
            kind = ""
        if not kind:
            return 404, {"error": "not_found", "message": f"no route {method} {path}"}, {}

        fault = self._take_fault(kind)
        if fault is not None and fault.status is not None and not fault.after_mint:
            return self._fault_answer(fault)

        self._sleep(self.delay)
        if kind == "mint":
            key = headers.get("Idempotency-Key")
            if not key:
                return 400, {"error": "bad_request", "message": "Idempotency-Key required"}, {}
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return 400, {"error": "bad_request", "message": "body is not JSON"}, {}
            if not isinstance(body, dict):
                return 400, {"error": "bad_request", "message": "body is not an object"}, {}
            status, answer = self._mint(key, body)
        elif kind == "revoke":
            status, answer = self._revoke(parts[2])
        elif kind == "lookup":
            status, answer = self._lookup(query.get("idempotency_key", [None])[0])
        else:
            product = query.get("product", [None])[0]
            status, answer = 200, {"product": product, "remaining": self.stock}

        if fault is not None:
            if fault.status is None:
                self._sleep(fault.delay)
            else:
                return self._fault_answer(fault)
        return status, answer, {}

    def _fault_answer(self, fault: Fault) -> tuple[int, dict[str, Any], dict[str, str]]:
        self._sleep(fault.delay)
        assert fault.status is not None
        extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        default = {"error": "rate_limited" if fault.status == 429 else "unavailable"}
        return fault.status, fault.body if fault.body is not None else default, extra

    def snapshot(self) -> dict[str, Any]:
        """Everything the partner holds, JSON-ready (for debugging a failing test)."""
        with self._lock:
            return {
                "stock": self.stock,
                "vouchers": [asdict(v) for v in self.vouchers.values()],
                "requests": [asdict(s) for s in self.requests],
            }

    def __iter__(self) -> Iterator[Voucher]:
        with self._lock:
            return iter(list(self.vouchers.values()))


class _Server(ThreadingHTTPServer):
    # A real partner's listen backlog: with the default of 5, concurrent calls beyond it
    # wait for a SYN retransmit (a second) and look like a slow partner.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    owner: FakePartner
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body, extra = self.owner.handle(
            method, split.path, parse_qs(split.query), self.headers, raw
        )
        data = json.dumps(body).encode()
        with self.owner._lock:
            self.owner.requests.append(
                Seen(method, split.path, self.headers.get("Idempotency-Key"), status, time.time())
            )
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: requests are kept in FakePartner.requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake voucher partner.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--stock", type=int, default=None)
    parser.add_argument("--api-key", default="partner-test-key")
    args = parser.parse_args(argv)
    partner = FakePartner(stock=args.stock, api_key=args.api_key, host=args.host, port=args.port)
    partner.start()
    print(f"fake partner on {partner.url} (api key {args.api_key!r}); Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        partner.stop()


if __name__ == "__main__":
    main()
