"""The `Crm` port over the company's own customer API (customer_api.openapi.yaml beside this file).

Bearer token from the constructor (the composition root reads it from Secrets Manager); timeouts, 429
with Retry-After and 5xx retried with backoff within the invocation's deadline (adapters/http.py). An
unknown customer is `None` / no orders, as with the embedded CRM; every other failure is AdapterError.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx2

from support_agent.adapters.http import JsonApi, NotFound, Remaining, RetryPolicy
from support_agent.models import EMAIL_PATTERN, Customer, Order

MAX_ORDER_PAGES = 5
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_EMAIL = re.compile(EMAIL_PATTERN)


def _order(data: Mapping[str, Any]) -> Order:
    tracking = data.get("tracking") or {}
    return Order(
        id=str(data["id"]),
        customer_id=str(data["customer_id"]),
        ordered_at=str(data["ordered_at"]),
        items=list(data.get("items") or []),
        total_cents=int(data["total_cents"]),
        status=str(data["status"]),
        carrier=tracking.get("carrier"),
        tracking=tracking.get("number"),
        shipped_at=tracking.get("shipped_at"),
        eta=data.get("eta"),
    )


class CustomerApiCrm:
    """`Crm` on the customer API."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 5.0,
        remaining: Remaining | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = JsonApi(
            "Customer API",
            base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            remaining=remaining,
            retry=retry,
            transport=transport,
            sleep=sleep,
            secrets=(token,),
        )

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any], **options: Any) -> CustomerApiCrm:
        """From the Secrets Manager JSON: `{"base_url": ..., "token": ...}`."""
        if not secret.get("base_url") or not secret.get("token"):
            raise ValueError("the customer API secret needs base_url and token")
        return cls(str(secret["base_url"]), str(secret["token"]), **options)

    def get_customer(self, customer_id: str) -> Customer | None:
        if not _ID.match(customer_id):
            return None
        try:
            body = self.api.request(
                "GET", f"/customers/{quote(customer_id, safe='')}", what=f"customer {customer_id}"
            )
        except NotFound:
            return None
        return Customer.model_validate(body)

    def find_customer_by_email(self, email: str) -> Customer | None:
        address = email.strip().lower()
        if not _EMAIL.match(address):
            return None
        body = self.api.request("GET", "/customers", params={"email": address})
        found = body.get("data") or []
        return Customer.model_validate(found[0]) if found else None

    def list_orders(self, customer_id: str) -> list[Order]:
        """Every order (up to a few pages), newest first; none for an unknown customer."""
        if not _ID.match(customer_id):
            return []
        path = f"/customers/{quote(customer_id, safe='')}/orders"
        params: dict[str, Any] = {"limit": 100}
        orders: list[Order] = []
        for _ in range(MAX_ORDER_PAGES):
            try:
                body = self.api.request("GET", path, params=params, what=f"customer {customer_id}")
            except NotFound:
                return []
            orders.extend(_order(o) for o in body.get("data") or [])
            cursor = body.get("next_cursor")
            if not cursor:
                break
            params = {"limit": 100, "cursor": cursor}
        return sorted(orders, key=lambda o: o.ordered_at, reverse=True)
