"""The Billing port's contract: the same behaviour from the embedded adapter (moto DynamoDB) and from the
Stripe adapter (the real SDK over HTTP to localstripe). Invoice ids differ by backend, so tests find
invoices by description, as listed."""

from __future__ import annotations

import pytest
from support_agent.adapters.ports import AdapterError

from tests.contract.conftest import BillingBackend

MARCH = "Premium plan, March 2026"
NOVEMBER = "Premium plan, November 2026"


def refunded(backend: BillingBackend, customer_id: str, description: str) -> int:
    return int(backend.invoice(customer_id, description).refunded_cents)


def test_lists_the_customers_invoices_newest_first(billing_backend: BillingBackend):
    invoices = billing_backend.billing.list_invoices("cus_jane")

    assert [i.description for i in invoices] == [NOVEMBER, "Premium plan, October 2026", MARCH]
    assert [i.period for i in invoices] == ["2026-11", "2026-10", "2026-03"]
    assert {(i.customer_id, i.amount_cents, i.currency, i.status, i.refunded_cents) for i in invoices} == {
        ("cus_jane", 19900, "usd", "paid", 0)
    }
    assert all(i.paid_at for i in invoices)


def test_unknown_customer_has_no_invoices(billing_backend: BillingBackend):
    assert billing_backend.billing.list_invoices("cus_nobody") == []


def test_unknown_invoice_is_refused(billing_backend: BillingBackend):
    with pytest.raises(AdapterError, match="does not belong"):
        billing_backend.billing.refund("cus_jane", "in_does_not_exist", 100, "k-unknown")


def test_another_customers_invoice_is_refused(billing_backend: BillingBackend):
    marcos = billing_backend.invoice("cus_marco", "Pro plan, November 2026")

    with pytest.raises(AdapterError, match="does not belong"):
        billing_backend.billing.refund("cus_jane", marcos.id, 1000, "k-wrong-customer")

    assert refunded(billing_backend, "cus_marco", "Pro plan, November 2026") == 0


def test_same_key_refunds_once(billing_backend: BillingBackend):
    invoice = billing_backend.invoice("cus_jane", NOVEMBER)

    first = billing_backend.billing.refund("cus_jane", invoice.id, 5000, "k-once")
    again = billing_backend.billing.refund("cus_jane", invoice.id, 5000, "k-once")

    assert again == first
    assert (first.amount_cents, first.currency, first.invoice_id, first.customer_id) == (
        5000,
        "usd",
        invoice.id,
        "cus_jane",
    )
    assert first.idempotency_key == "k-once"
    assert refunded(billing_backend, "cus_jane", NOVEMBER) == 5000


def test_partial_refunds_add_up_until_nothing_is_left(billing_backend: BillingBackend):
    billing = billing_backend.billing
    invoice = billing_backend.invoice("cus_jane", MARCH)

    billing.refund("cus_jane", invoice.id, 5000, "k-part-1")
    billing.refund("cus_jane", invoice.id, 4000, "k-part-2")
    assert refunded(billing_backend, "cus_jane", MARCH) == 9000

    with pytest.raises(AdapterError, match="10900"):
        billing.refund("cus_jane", invoice.id, 10901, "k-part-3")
    last = billing.refund("cus_jane", invoice.id, 10900, "k-part-4")
    assert last.amount_cents == 10900
    assert refunded(billing_backend, "cus_jane", MARCH) == 19900

    with pytest.raises(AdapterError):
        billing.refund("cus_jane", invoice.id, 1, "k-part-5")
    # A late redelivery of an earlier call still answers with its refund, and refunds nothing more.
    assert billing.refund("cus_jane", invoice.id, 5000, "k-part-1").amount_cents == 5000
    assert refunded(billing_backend, "cus_jane", MARCH) == 19900


@pytest.mark.parametrize("amount", [19901, 0, -5])
def test_refund_outside_the_original_is_refused(billing_backend: BillingBackend, amount: int):
    invoice = billing_backend.invoice("cus_jane", NOVEMBER)

    with pytest.raises(AdapterError, match="19900"):
        billing_backend.billing.refund("cus_jane", invoice.id, amount, f"k-outside-{amount}")

    assert refunded(billing_backend, "cus_jane", NOVEMBER) == 0


def test_zero_decimal_currency_amounts_are_whole_units(billing_backend: BillingBackend):
    invoice = billing_backend.invoice("cus_kenji", "Pro plan, November 2026")
    assert (invoice.amount_cents, invoice.currency) == (5000, "jpy")  # ¥5,000: not 50.00, not 500000

    refund = billing_backend.billing.refund("cus_kenji", invoice.id, 1200, "k-yen")

    assert (refund.amount_cents, refund.currency) == (1200, "jpy")
    assert refunded(billing_backend, "cus_kenji", "Pro plan, November 2026") == 1200
    with pytest.raises(AdapterError, match="3800"):
        billing_backend.billing.refund("cus_kenji", invoice.id, 3801, "k-yen-2")


def test_failures_are_adapter_errors_without_secrets(billing_backend: BillingBackend):
    if billing_backend.broken is None:
        pytest.skip("the embedded backend holds no credentials; its AWS errors propagate (SQS redelivers)")
    broken, secret = billing_backend.broken()

    with pytest.raises(AdapterError) as listing:
        broken.list_invoices("cus_jane")
    with pytest.raises(AdapterError) as refunding:
        broken.refund("cus_jane", "in_anything", 100, "k-broken")

    for caught in (listing, refunding):
        message = str(caught.value)
        assert "credentials" in message
        assert secret not in message and "SECRET" not in message and "Unauthorized" not in message
