"""The `Crm` contract: the same answers from the embedded CRM (moto) and from the customer API adapter
over real HTTP to the local server, which serves the same sample data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support_agent.adapters.customer_api import CustomerApiCrm
from support_agent.adapters.embedded import EmbeddedCrm, seed
from support_agent.adapters.http import RetryPolicy, fixed_budget
from support_agent.adapters.ports import AdapterError
from support_agent_local.customer_api_server import CustomerApiServer

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, margin=0.0)


@dataclass
class Backend:
    name: str
    crm: Any
    failing: Callable[[], Any]
    secret: str


@pytest.fixture(scope="module")
def seeded_table(shared_stack: Any) -> str:
    table: str = shared_stack.ref("EmbeddedDataTable")
    seed(table)
    return table


@pytest.fixture(params=["embedded", "customer_api"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "embedded":
        table = request.getfixturevalue("seeded_table")
        yield Backend("embedded", EmbeddedCrm(table), lambda: EmbeddedCrm("no-such-table"), "")
        return
    with CustomerApiServer(token="s3cret-bearer-token") as server:

        def adapter(token: str) -> CustomerApiCrm:
            return CustomerApiCrm(server.url, token, remaining=fixed_budget(10), retry=FAST)

        yield Backend(
            "customer_api",
            adapter(server.token),
            lambda: adapter("wrong-bearer-token"),
            server.token,
        )


def test_a_customer_by_id(backend):
    jane = backend.crm.get_customer("cus_jane")
    assert jane is not None
    assert (jane.name, jane.email, jane.plan, jane.signup_date) == (
        "Jane Smith",
        "jane.smith@example.com",
        "Premium",
        "2025-05-20",
    )
    assert jane.lifetime_value_cents == 420000
    assert jane.notifications == {"email": True, "sms": False, "digest": True}


def test_a_customer_by_email_ignores_case_and_spaces(backend):
    found = backend.crm.find_customer_by_email("  Marco.Rossi@Example.com ")
    assert found is not None and found.id == "cus_marco"
    assert found.locale == "it"


@pytest.mark.parametrize("customer_id", ["cus_nobody", "../cus_jane", "cus jane"])
def test_an_unknown_customer_is_none(backend, customer_id):
    assert backend.crm.get_customer(customer_id) is None
    assert backend.crm.list_orders(customer_id) == []


@pytest.mark.parametrize("email", ["nobody@example.com", "not-an-email"])
def test_an_unknown_email_is_none(backend, email):
    assert backend.crm.find_customer_by_email(email) is None


def test_orders_newest_first_with_tracking(backend):
    orders = backend.crm.list_orders("cus_jane")
    assert [o.id for o in orders] == ["ORD-5001", "ORD-4870"]
    first = orders[0]
    assert (first.status, first.carrier, first.tracking, first.shipped_at, first.eta) == (
        "shipped",
        "UPS",
        "1Z999AA10123456784",
        "2026-11-24",
        "2026-11-29",
    )
    assert first.items == [{"sku": "HUB-2", "name": "Acme Hub 2", "qty": 1}]


def test_an_unshipped_order_has_no_tracking_but_an_eta(backend):
    (order,) = backend.crm.list_orders("cus_marco")
    assert (order.status, order.carrier, order.tracking, order.eta) == (
        "processing",
        None,
        None,
        "2026-12-03",
    )


def test_a_failing_backend_is_an_adapter_error_with_a_safe_message(backend):
    broken = backend.failing()
    for call in (
        lambda: broken.get_customer("cus_jane"),
        lambda: broken.find_customer_by_email("jane.smith@example.com"),
        lambda: broken.list_orders("cus_jane"),
    ):
        with pytest.raises(AdapterError) as caught:
            call()
        if backend.secret:
            assert backend.secret not in str(caught.value)
            assert "wrong-bearer-token" not in str(caught.value)
