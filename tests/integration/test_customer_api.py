"""The customer API: the OpenAPI file is valid, the local server answers by it, and the HTTP adapter
retries, paginates and fails safely."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from support_agent.adapters.customer_api import CustomerApiCrm
from support_agent.adapters.http import RetryPolicy, fixed_budget
from support_agent.adapters.ports import AdapterError
from support_agent_local.customer_api_server import SPEC, CustomerApiServer

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")
openapi_schema_validator = pytest.importorskip("openapi_schema_validator")

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, margin=0.0)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(Path(SPEC).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def server() -> Iterator[CustomerApiServer]:
    with CustomerApiServer() as running:
        yield running


def response_schema(spec: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    """The JSON schema of one documented response, with the components it refers to."""
    response = spec["paths"][path]["get"]["responses"][str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    return {**response["content"]["application/json"]["schema"], "components": spec["components"]}


def check(spec: dict[str, Any], path: str, response: httpx2.Response) -> None:
    validator = openapi_schema_validator.OAS30Validator(
        response_schema(spec, path, response.status_code),
        format_checker=openapi_schema_validator.oas30_format_checker,
    )
    validator.validate(response.json())
    for header in ("Retry-After", "WWW-Authenticate"):
        documented = spec["paths"][path]["get"]["responses"][str(response.status_code)]
        if "$ref" in documented:
            documented = spec["components"]["responses"][documented["$ref"].rsplit("/", 1)[-1]]
        if header in documented.get("headers", {}):
            assert header in response.headers


def test_the_openapi_file_is_valid(spec):
    openapi_spec_validator.validate(spec)


def test_every_answer_matches_the_contract(spec, server):
    auth = {"Authorization": f"Bearer {server.token}"}
    with httpx2.Client(base_url=server.url, headers=auth) as client:
        for customer in server.customers.values():
            check(spec, "/customers/{customer_id}", client.get(f"/customers/{customer['id']}"))
            found = client.get("/customers", params={"email": customer["email"].upper()})
            check(spec, "/customers", found)
            assert found.json()["data"][0]["id"] == customer["id"]
            pages, cursor = 0, None
            while True:
                params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
                page = client.get(f"/customers/{customer['id']}/orders", params=params)
                check(spec, "/customers/{customer_id}/orders", page)
                pages += 1
                cursor = page.json()["next_cursor"]
                if not cursor:
                    break
            assert pages == max(1, sum(o["customer_id"] == customer["id"] for o in server.orders))
        check(spec, "/customers", client.get("/customers", params={"email": "nobody@example.com"}))
        missing = client.get("/customers/cus_nobody")
        assert missing.status_code == 404
        check(spec, "/customers/{customer_id}", missing)
        assert client.get("/customers/cus_nobody/orders").status_code == 404
        bad = client.get("/customers", params={"email": "nope"})
        assert bad.status_code == 400
        check(spec, "/customers", bad)
        bad_limit = client.get("/customers/cus_jane/orders", params={"limit": 0})
        assert bad_limit.status_code == 400
        check(spec, "/customers/{customer_id}/orders", bad_limit)
        server.fail_next = [429, 503]
        for status in (429, 503):
            limited = client.get("/customers/cus_jane")
            assert limited.status_code == status
            check(spec, "/customers/{customer_id}", limited)
    anonymous = httpx2.get(f"{server.url}/customers/cus_jane")
    assert anonymous.status_code == 401
    check(spec, "/customers/{customer_id}", anonymous)


def test_the_adapter_retries_429_and_5xx_within_the_deadline(server):
    sleeps: list[float] = []
    crm = CustomerApiCrm(
        server.url, server.token, remaining=fixed_budget(10), retry=FAST, sleep=sleeps.append
    )
    server.fail_next, server.retry_after = [429, 502], "1"
    customer = crm.get_customer("cus_jane")
    assert customer is not None and customer.name == "Jane Smith"
    assert sleeps[0] == 1.0 and len(sleeps) == 2
    server.fail_next = [500, 500, 500]
    with pytest.raises(AdapterError, match=r"Customer API: failed with HTTP 500, 3 attempts"):
        crm.list_orders("cus_jane")


def test_a_retry_after_past_the_deadline_fails_fast(server):
    sleeps: list[float] = []
    crm = CustomerApiCrm(server.url, server.token, remaining=fixed_budget(3), retry=FAST, sleep=sleeps.append)
    server.fail_next, server.retry_after = [503], "30"
    with pytest.raises(AdapterError, match="no time left to retry"):
        crm.find_customer_by_email("jane.smith@example.com")
    assert sleeps == []


def test_orders_over_several_pages(server):
    for n in range(130):
        server.orders.append(
            {
                "id": f"ORD-9{n:03d}",
                "customer_id": "cus_sam",
                "ordered_at": f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}",
                "items": [{"sku": "SENS-4", "name": "Sensor 4-pack", "qty": 1}],
                "total_cents": 100,
                "status": "delivered",
                "carrier": "UPS",
                "tracking": f"1Z{n:06d}",
                "shipped_at": "2025-01-02",
                "eta": None,
            }
        )
    orders = CustomerApiCrm(server.url, server.token, remaining=fixed_budget(10)).list_orders("cus_sam")
    assert len(orders) == 131
    assert orders[0].id == "ORD-5022"  # the newest, from the sample data
    assert [o.ordered_at for o in orders] == sorted((o.ordered_at for o in orders), reverse=True)


def test_an_unreachable_api_is_an_adapter_error():
    with CustomerApiServer() as gone:
        url = gone.url
    crm = CustomerApiCrm(url, "tok", remaining=fixed_budget(5), retry=FAST, sleep=lambda s: None)
    with pytest.raises(AdapterError, match="Customer API: unreachable"):
        crm.get_customer("cus_jane")


def test_from_secret():
    crm = CustomerApiCrm.from_secret({"base_url": "https://api.acme.example/support/v1", "token": "t"})
    assert crm.api.base_url == "https://api.acme.example/support/v1"
    with pytest.raises(ValueError, match="base_url and token"):
        CustomerApiCrm.from_secret({"token": "t"})
