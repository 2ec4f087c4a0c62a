"""The customer API (customer_api.openapi.yaml) on 127.0.0.1, serving the embedded sample data.

So the HTTP `Crm` adapter runs end to end locally and in tests: bearer auth, the documented error
shape, cursor pagination of orders, and injected 429/5xx for the retry tests. `python -m
support_agent_local.customer_api_server --port 8081` runs it in a terminal.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from support_agent import adapters
from support_agent.adapters.embedded import SAMPLE_DATA

SPEC = Path(adapters.__file__).resolve().parent / "customer_api.openapi.yaml"
PREFIX = "/support/v1"
LOCAL_TOKEN = "local-customer-api-token"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def customer_view(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"],
        "name": c["name"],
        "email": c["email"],
        "plan": c["plan"],
        "signup_date": c["signup_date"],
        "lifetime_value_cents": c["lifetime_value_cents"],
        "locale": c.get("locale", "en"),
        "status": c.get("status", "active"),
        "notifications": c.get("notifications", {}),
    }


def order_view(o: dict[str, Any]) -> dict[str, Any]:
    shipped = o.get("tracking") and o.get("carrier")
    return {
        "id": o["id"],
        "customer_id": o["customer_id"],
        "ordered_at": o["ordered_at"],
        "status": o["status"],
        "items": o["items"],
        "total_cents": o["total_cents"],
        "currency": o.get("currency", "USD"),
        "eta": o.get("eta"),
        "tracking": {
            "carrier": o["carrier"],
            "number": o["tracking"],
            "shipped_at": o.get("shipped_at") or o["ordered_at"],
            "url": None,
        }
        if shipped
        else None,
    }


class CustomerApiServer:
    def __init__(self, token: str = LOCAL_TOKEN, data: Path = SAMPLE_DATA, port: int = 0) -> None:
        self.token = token
        sample = json.loads(data.read_text(encoding="utf-8"))
        self.customers: dict[str, dict[str, Any]] = {c["id"]: c for c in sample["customers"]}
        self.orders: list[dict[str, Any]] = list(sample["orders"])
        self.requests: list[str] = []
        self.fail_next: list[int] = []  # statuses to answer before handling the next requests
        self.retry_after = "0"
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        # A short poll interval makes stop() quick (shutdown waits for the loop to look).
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"

    def start(self) -> CustomerApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> CustomerApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        if not path.startswith(PREFIX + "/"):
            raise ApiError(404, "not_found", "no such endpoint")
        parts = [unquote(p) for p in path[len(PREFIX) + 1 :].split("/")]
        if parts == ["customers"]:
            email = query.get("email", "").strip().lower()
            if not email or "@" not in email:
                raise ApiError(400, "bad_request", "email: a valid e-mail address is required")
            found = [customer_view(c) for c in self.customers.values() if c["email"].lower() == email]
            return {"data": found[:1]}
        if len(parts) in {2, 3} and parts[0] == "customers":
            customer = self.customers.get(parts[1])
            if customer is None:
                raise ApiError(404, "not_found", "no such customer")
            if len(parts) == 2:
                return customer_view(customer)
            if parts[2] == "orders":
                return self._orders(parts[1], query)
        raise ApiError(404, "not_found", "no such endpoint")

    def _orders(self, customer_id: str, query: dict[str, str]) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", "20"))
            start = int(base64.urlsafe_b64decode(query["cursor"]).decode()) if "cursor" in query else 0
        except ValueError:
            raise ApiError(400, "bad_request", "limit or cursor is malformed") from None
        if not 1 <= limit <= 100:
            raise ApiError(400, "bad_request", "limit: between 1 and 100")
        mine = sorted(
            (o for o in self.orders if o["customer_id"] == customer_id),
            key=lambda o: (o["ordered_at"], o["id"]),
            reverse=True,
        )
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode() if more else None
        return {"data": [order_view(o) for o in page], "next_cursor": cursor}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                with api._lock:
                    api.requests.append(url.path)
                    injected = api.fail_next.pop(0) if api.fail_next else None
                request_id = uuid.uuid4().hex[:16]
                try:
                    if url.path == "/openapi.yaml":
                        self._send(200, SPEC.read_bytes(), "application/yaml")
                        return
                    if injected is not None:
                        code = {429: "rate_limited", 503: "unavailable"}.get(injected, "internal")
                        headers = {"Retry-After": api.retry_after} if injected in {429, 503} else {}
                        raise ApiError(injected, code, f"injected HTTP {injected}", headers)
                    if self.headers.get("Authorization") != f"Bearer {api.token}":
                        raise ApiError(
                            401,
                            "unauthorized",
                            "a valid bearer token is required",
                            {"WWW-Authenticate": "Bearer"},
                        )
                    body = api.handle(url.path, query)
                    self._send(200, json.dumps(body).encode())
                except ApiError as exc:
                    error = {"error": {"code": exc.code, "message": exc.message, "request_id": request_id}}
                    self._send(exc.status, json.dumps(error).encode(), headers=exc.headers)

            def _send(
                self,
                status: int,
                data: bytes,
                kind: str = "application/json",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The customer API on 127.0.0.1 over the sample data")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--token", default=LOCAL_TOKEN)
    args = parser.parse_args(argv)
    server = CustomerApiServer(args.token, port=args.port)
    print(f"customer API listening on {server.url} (Authorization: Bearer {args.token})", flush=True)
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
