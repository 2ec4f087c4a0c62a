"""The Stripe adapter beyond the shared contract.

localstripe answers in the shape of Stripe API versions before 2025-03-31 (`invoice.payment_intent`) and
has no `/v1/invoice_payments`, which the SDK's pinned API version needs to find an invoice's payments. That
path, and what localstripe does not do (idempotency keys, the refund `reason`, error codes, rate limits),
is tested here against recorded responses in Stripe's documented shapes, served over HTTP on 127.0.0.1 to
the real SDK.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe
from support_agent.adapters.ports import AdapterError
from support_agent.adapters.stripe_billing import StripeBilling
from support_agent_local import stripe_seed
from support_agent_local.stripe_emulator import LocalStripe

from tests.contract.conftest import SAMPLE, SampleDirectory, stripe_billing

# --- recorded responses ----------------------------------------------------------------------------------

NOV_1 = 1793491200  # 2026-11-01T00:00:00Z
DEC_1 = 1796083200


def page(url: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "url": url, "has_more": False, "data": list(items)}


def stripe_customer(id_: str, email: str, crm_id: str | None) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "customer",
        "email": email,
        "name": "Jane Smith",
        "created": NOV_1,
        "livemode": False,
        "metadata": {"crm_customer_id": crm_id} if crm_id else {},
    }


def invoice(id_: str, status: str = "paid", amount: int = 19900, currency: str = "usd") -> dict[str, Any]:
    """An invoice as API versions from 2025-03-31 return it: no payment_intent or charge fields."""
    return {
        "id": id_,
        "object": "invoice",
        "customer": "cus_S1",
        "currency": currency,
        "status": status,
        "description": "Premium plan, November 2026",
        "number": "A1B2C3-0007",
        "total": amount,
        "amount_due": amount,
        "amount_paid": amount if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else amount,
        "created": NOV_1,
        "period_start": NOV_1 - 2592000,
        "period_end": NOV_1,
        "status_transitions": {"finalized_at": NOV_1, "paid_at": NOV_1 + 60 if status == "paid" else None},
        "lines": page(
            f"/v1/invoices/{id_}/lines",
            {
                "id": "il_1",
                "object": "line_item",
                "amount": amount,
                "currency": currency,
                "description": "1 × Premium (at $199.00 / month)",
                "period": {"start": NOV_1, "end": DEC_1},
            },
        ),
        "livemode": False,
        "metadata": {},
    }


def invoice_payment(
    id_: str, invoice_id: str, amount: int, payment: dict[str, Any], currency: str = "usd"
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "created": NOV_1 + 60,
        "currency": currency,
        "invoice": invoice_id,
        "is_default": True,
        "livemode": False,
        "payment": payment,
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": NOV_1 + 60},
    }


def refund(
    id_: str, amount: int, status: str = "succeeded", key: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "refund",
        "amount": amount,
        "currency": extra.pop("currency", "usd"),
        "created": NOV_1 + 3600,
        "payment_intent": "pi_A",
        "charge": "ch_A",
        "reason": "requested_by_customer",
        "status": status,
        "metadata": {"idempotency_key": key} if key else {},
        **extra,
    }


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]


Route = tuple[int, dict[str, Any]] | Callable[["Seen"], tuple[int, dict[str, Any]]]


@dataclass
class RecordedStripe:
    """Serves recorded responses by (method, path, sorted query) and keeps what was asked."""

    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def route(self, method: str, path: str, response: Route, **query: str) -> None:
        self.routes[(method, path + _query(query))] = response

    def answer(self, seen: Seen) -> tuple[int, dict[str, Any], dict[str, str]]:
        self.seen.append(seen)
        wanted = {k: v for k, v in seen.query.items() if k not in {"limit", "expand[]"}}
        found = self.routes.get((seen.method, seen.path + _query(wanted)))
        if found is None:
            return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}}, {}
        status, body = found(seen) if callable(found) else found
        return status, body, {"Request-Id": "req_Rec0rded123"}

    def posts(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == path]


def _query(query: dict[str, str]) -> str:
    return "?" + urllib.parse.urlencode(sorted(query.items())) if query else ""


@pytest.fixture
def recorded() -> Iterator[RecordedStripe]:
    stub = RecordedStripe()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            seen = Seen(
                self.command,
                parsed.path,
                dict(urllib.parse.parse_qsl(parsed.query)),
                dict(urllib.parse.parse_qsl(body)),
                {k.lower(): v for k, v in self.headers.items()},
            )
            status, payload, headers = stub.answer(seen)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    # Jane is Stripe's cus_S1 (tagged); a customer with the same email but another CRM id is never taken.
    stub.route(
        "GET",
        "/v1/customers",
        (
            200,
            page(
                "/v1/customers",
                stripe_customer("cus_S1", "jane.smith@example.com", "cus_jane"),
                stripe_customer("cus_OTHER", "jane.smith@example.com", "cus_someone_else"),
            ),
        ),
        email="jane.smith@example.com",
    )
    yield stub
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def adapter(stub: RecordedStripe, **kwargs: Any) -> StripeBilling:
    return StripeBilling(
        "sk_test_recorded", SampleDirectory(), api_base=stub.url, max_network_retries=0, **kwargs
    )


def paid_by_intent(stub: RecordedStripe, refunds: list[dict[str, Any]], **inv: Any) -> None:
    """in_A, paid through pi_A, with these refunds so far."""
    amount = inv.get("amount", 19900)
    stub.route("GET", "/v1/invoices/in_A", (200, invoice("in_A", **inv)))
    stub.route(
        "GET",
        "/v1/invoice_payments",
        (
            200,
            page(
                "/v1/invoice_payments",
                invoice_payment(
                    "inpay_1",
                    "in_A",
                    amount,
                    {"type": "payment_intent", "payment_intent": "pi_A"},
                    currency=inv.get("currency", "usd"),
                ),
            ),
        ),
        invoice="in_A",
        status="paid",
    )
    stub.route("GET", "/v1/refunds", (200, page("/v1/refunds", *refunds)), payment_intent="pi_A")


def created(seen: Seen) -> tuple[int, dict[str, Any]]:
    """POST /v1/refunds: the refund Stripe would make of these parameters."""
    return 200, refund(
        "re_NEW",
        int(seen.form["amount"]),
        key=seen.form.get("metadata[idempotency_key]"),
        payment_intent=seen.form.get("payment_intent"),
        charge=seen.form.get("charge", "ch_A"),
        currency="jpy" if seen.form["amount"] == "1200" else "usd",
    )


# --- the current API shape ------------------------------------------------------------------------------


def test_lists_invoices_through_invoice_payments_and_counts_live_refunds(recorded: RecordedStripe):
    recorded.route(
        "GET",
        "/v1/invoices",
        (200, page("/v1/invoices", invoice("in_A"), invoice("in_D", status="draft"))),
        customer="cus_S1",
    )
    paid_by_intent(
        recorded,
        [refund("re_1", 5000), refund("re_2", 3000, status="failed"), refund("re_3", 700, status="pending")],
    )

    (only,) = adapter(recorded).list_invoices("cus_jane")

    assert only.model_dump() == {
        "id": "in_A",
        "customer_id": "cus_jane",
        "period": "2026-11",
        "description": "Premium plan, November 2026",
        "amount_cents": 19900,
        "status": "paid",
        "paid_at": "2026-11-01",
        "refunded_cents": 5700,  # the failed refund gave its money back; the pending one holds it
        "currency": "usd",
    }
    listed = [s for s in recorded.seen if s.path == "/v1/invoices"]
    assert listed[0].query == {"customer": "cus_S1", "limit": "12"}


def test_refund_sends_the_idempotency_key_and_reason(recorded: RecordedStripe):
    paid_by_intent(recorded, [refund("re_1", 5000, key="k-old")])
    recorded.route("POST", "/v1/refunds", created)

    made = adapter(recorded).refund("cus_jane", "in_A", 2000, "session-1:issue_refund:abc")

    (post,) = recorded.posts("/v1/refunds")
    assert post.headers["idempotency-key"] == "session-1:issue_refund:abc"
    assert post.form == {
        "payment_intent": "pi_A",
        "amount": "2000",
        "reason": "requested_by_customer",
        "metadata[idempotency_key]": "session-1:issue_refund:abc",
        "metadata[invoice]": "in_A",
        "metadata[crm_customer_id]": "cus_jane",
    }
    assert (made.id, made.amount_cents, made.invoice_id, made.customer_id) == (
        "re_NEW",
        2000,
        "in_A",
        "cus_jane",
    )


def test_a_key_seen_in_refund_metadata_returns_that_refund_without_asking_again(recorded: RecordedStripe):
    """Stripe forgets idempotency keys after 24 hours; an approval may come days later."""
    paid_by_intent(recorded, [refund("re_1", 5000, key="k-old")])

    again = adapter(recorded).refund("cus_jane", "in_A", 5000, "k-old")

    assert (again.id, again.amount_cents) == ("re_1", 5000)
    assert recorded.posts("/v1/refunds") == []


def test_more_than_is_left_is_refused_before_stripe_is_asked(recorded: RecordedStripe):
    paid_by_intent(recorded, [refund("re_1", 5000)])

    with pytest.raises(AdapterError, match=r"outside 1\.\.14900"):
        adapter(recorded).refund("cus_jane", "in_A", 14901, "k-too-much")
    assert recorded.posts("/v1/refunds") == []


def test_zero_decimal_amounts_are_sent_unscaled(recorded: RecordedStripe):
    paid_by_intent(recorded, [], amount=5000, currency="jpy")
    recorded.route("POST", "/v1/refunds", created)

    made = adapter(recorded).refund("cus_jane", "in_A", 1200, "k-yen")

    assert recorded.posts("/v1/refunds")[0].form["amount"] == "1200"  # ¥1,200, not 120000
    assert (made.amount_cents, made.currency) == (1200, "jpy")


def test_an_invoice_paid_in_two_payments_is_refunded_from_one(recorded: RecordedStripe):
    recorded.route("GET", "/v1/invoices/in_A", (200, invoice("in_A")))
    recorded.route(
        "GET",
        "/v1/invoice_payments",
        (
            200,
            page(
                "/v1/invoice_payments",
                invoice_payment(
                    "inpay_1", "in_A", 9900, {"type": "payment_intent", "payment_intent": "pi_A"}
                ),
                # the shape of some preview versions: ids on the invoice payment itself
                invoice_payment("inpay_2", "in_A", 10000, {}) | {"charge": "ch_B", "payment_intent": None},
            ),
        ),
        invoice="in_A",
        status="paid",
    )
    recorded.route("GET", "/v1/refunds", (200, page("/v1/refunds")), payment_intent="pi_A")
    recorded.route("GET", "/v1/refunds", (200, page("/v1/refunds")), charge="ch_B")
    recorded.route("POST", "/v1/refunds", created)

    with pytest.raises(AdapterError, match="split"):
        adapter(recorded).refund("cus_jane", "in_A", 12000, "k-split")
    adapter(recorded).refund("cus_jane", "in_A", 9950, "k-second")

    (post,) = recorded.posts("/v1/refunds")
    assert (post.form.get("charge"), post.form.get("payment_intent")) == ("ch_B", None)


def test_an_invoice_paid_outside_stripe_has_nothing_to_refund(recorded: RecordedStripe):
    recorded.route("GET", "/v1/invoices/in_A", (200, invoice("in_A")))
    recorded.route(
        "GET",
        "/v1/invoice_payments",
        (
            200,
            page(
                "/v1/invoice_payments",
                invoice_payment(
                    "inpay_1", "in_A", 19900, {"type": "payment_record", "payment_record": "pr_1"}
                ),
            ),
        ),
        invoice="in_A",
        status="paid",
    )

    with pytest.raises(AdapterError, match="no payment to refund"):
        adapter(recorded).refund("cus_jane", "in_A", 100, "k-oob")


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (
            400,
            {"type": "invalid_request_error", "code": "amount_too_large"},
            "more than what is left to refund",
        ),
        (400, {"type": "invalid_request_error", "code": "charge_disputed"}, "disputed"),
        (400, {"type": "idempotency_error"}, "already used for a different request"),
        (429, {"type": "invalid_request_error", "code": "rate_limit"}, "rate-limiting"),
        (401, {"type": "invalid_request_error"}, "credentials"),
        (500, {"type": "api_error"}, "Stripe failed while refunding"),
    ],
)
def test_stripe_errors_become_safe_adapter_errors(
    recorded: RecordedStripe, status: int, error: dict[str, Any], expected: str
):
    paid_by_intent(recorded, [])
    leak = "Refund failed for sk_live_LEAKEDkey123 and jane.smith@example.com"
    recorded.route("POST", "/v1/refunds", (status, {"error": {**error, "message": leak}}))

    with pytest.raises(AdapterError) as caught:
        adapter(recorded).refund("cus_jane", "in_A", 100, "k-error")

    message = str(caught.value)
    assert expected in message
    assert "LEAKED" not in message and "jane.smith" not in message
    assert "req_Rec0rded123" in message  # Stripe's request id, for whoever looks it up


def test_an_unreachable_stripe_is_an_adapter_error():
    billing = StripeBilling(
        "sk_live_SECRET0key", SampleDirectory(), api_base="http://127.0.0.1:9", max_network_retries=0
    )

    with pytest.raises(AdapterError, match="did not answer") as caught:
        billing.list_invoices("cus_jane")
    assert "SECRET0key" not in str(caught.value) and "127.0.0.1" not in str(caught.value)


# --- customers, on localstripe --------------------------------------------------------------------------


def _customer(client: stripe.StripeClient, email: str, crm_id: str | None) -> str:
    """A Stripe customer with a card, tagged with a CRM id or not."""
    customer = {"id": crm_id or "", "name": "Jane", "email": email}
    return stripe_seed.create_customer(client, customer, metadata_key="crm_customer_id" if crm_id else "")


def test_customer_found_by_email_prefers_the_one_tagged_with_our_id(
    localstripe: LocalStripe, stripe_client: stripe.StripeClient
):
    _customer(stripe_client, "jane.smith@example.com", None)
    tagged = _customer(stripe_client, "jane.smith@example.com", "cus_jane")
    _customer(stripe_client, "jane.smith@example.com", "cus_other")
    stripe_seed.create_paid_invoice(stripe_client, tagged, SAMPLE["invoices"][0])

    assert [i.description for i in stripe_billing(localstripe).list_invoices("cus_jane")] == [
        "Premium plan, March 2026"
    ]


def test_customer_found_by_email_alone_when_untagged(
    localstripe: LocalStripe, stripe_client: stripe.StripeClient
):
    untagged = _customer(stripe_client, "jane.smith@example.com", None)
    _customer(stripe_client, "jane.smith@example.com", "cus_other")  # someone else's, by its tag
    stripe_seed.create_paid_invoice(stripe_client, untagged, SAMPLE["invoices"][0])

    assert len(stripe_billing(localstripe).list_invoices("cus_jane")) == 1


def test_two_untagged_customers_with_our_email_are_ambiguous(
    localstripe: LocalStripe, stripe_client: stripe.StripeClient
):
    _customer(stripe_client, "jane.smith@example.com", None)
    _customer(stripe_client, "jane.smith@example.com", None)

    with pytest.raises(AdapterError, match="crm_customer_id=cus_jane"):
        stripe_billing(localstripe).list_invoices("cus_jane")


def test_seed_creates_every_sample_invoice(localstripe: LocalStripe, stripe_client: stripe.StripeClient):
    seeded = stripe_seed.seed(stripe_client)

    assert set(seeded.customers) == {c["id"] for c in SAMPLE["customers"]}
    assert set(seeded.invoices) == {i["id"] for i in SAMPLE["invoices"]}
    billing = stripe_billing(localstripe, directory=SampleDirectory(SAMPLE["customers"]))
    listed = {i.id: i for c in SAMPLE["customers"] for i in billing.list_invoices(c["id"])}
    for sample in SAMPLE["invoices"]:
        got = listed[seeded.invoices[sample["id"]]]
        assert (got.customer_id, got.period, got.description, got.amount_cents, got.status, got.currency) == (
            sample["customer_id"],
            sample["period"],
            sample["description"],
            sample["amount_cents"],
            "paid",
            "usd",
        )
    assert localstripe.url.startswith("http://127.0.0.1:")
