"""The sample customers and paid invoices of data/sample_data.json, created in (emulated) Stripe.

Each customer gets a test card as default payment method and `metadata[crm_customer_id]` = our id (the
Stripe adapter finds customers by email and honours that tag). Each invoice is the first invoice of a
monthly subscription to a plan of the invoice's amount and currency, backdated to the invoice's period and
paid with that card; its description and `metadata[sample_invoice_id]` come from the sample. Stripe picks
the ids (in_…), so `seed` returns the mapping from ours.

Written for localstripe (support_agent_local.stripe_emulator): real Stripe would also accept these calls
in test mode, except the raw card number, which needs raw card data access there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stripe
from support_agent.adapters.embedded import SAMPLE_DATA

TEST_CARD: stripe.params.PaymentMethodCreateParamsCard = {
    "number": "4242424242424242",
    "exp_month": 12,
    "exp_year": 2034,
    "cvc": "123",
}


@dataclass
class Seeded:
    """Our ids → the ids Stripe gave."""

    customers: dict[str, str] = field(default_factory=dict)
    invoices: dict[str, str] = field(default_factory=dict)


def seed(
    client: stripe.StripeClient, path: Path = SAMPLE_DATA, metadata_key: str = "crm_customer_id"
) -> Seeded:
    """Create every sample customer and invoice; returns the id mappings."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out = Seeded()
    for customer in data["customers"]:
        out.customers[customer["id"]] = create_customer(client, customer, metadata_key)
    plans: dict[tuple[str, int, str], str] = {}
    for invoice in data["invoices"]:
        stripe_customer = out.customers[invoice["customer_id"]]
        out.invoices[invoice["id"]] = create_paid_invoice(client, stripe_customer, invoice, plans)
    return out


def create_customer(
    client: stripe.StripeClient, customer: dict[str, Any], metadata_key: str = "crm_customer_id"
) -> str:
    """A Stripe customer for one of ours (id, name, email), with a test card; returns its id.

    The customer is tagged `metadata[metadata_key]` = our id, unless metadata_key is empty."""
    card = client.v1.payment_methods.create(params={"type": "card", "card": TEST_CARD})
    params: stripe.params.CustomerCreateParams = {
        "email": customer["email"],
        "name": customer["name"],
        "payment_method": card.id,
        "invoice_settings": {"default_payment_method": card.id},
    }
    if metadata_key:
        params["metadata"] = {metadata_key: customer["id"]}
    return client.v1.customers.create(params=params).id


def create_paid_invoice(
    client: stripe.StripeClient,
    stripe_customer: str,
    invoice: dict[str, Any],
    plans: dict[tuple[str, int, str], str] | None = None,
) -> str:
    """A paid invoice like one of ours (amount_cents, currency, period, description); returns its id.

    `plans` caches the plans made so far (product name, amount, currency → plan id) across calls.
    """
    plans = {} if plans is None else plans
    currency = str(invoice.get("currency", "usd")).lower()
    amount = int(invoice["amount_cents"])  # already in the currency's smallest unit (JPY: whole yen)
    product = str(invoice["description"]).split(",")[0].split("(")[0].strip() or "Plan"
    key = (product, amount, currency)
    if key not in plans:
        plan = client.v1.plans.create(
            params={"amount": amount, "currency": currency, "interval": "month", "product": {"name": product}}
        )
        plans[key] = plan.id
    start = datetime.strptime(f"{invoice['period']}-01", "%Y-%m-%d").replace(tzinfo=UTC)
    subscription = client.v1.subscriptions.create(
        params={
            "customer": stripe_customer,
            "items": [{"plan": plans[key]}],
            "backdate_start_date": int(start.timestamp()),
        }
    )
    latest = subscription.latest_invoice
    invoice_id = latest if isinstance(latest, str) else latest.id if latest else None
    if not invoice_id:
        raise RuntimeError(f"Stripe made no invoice for {invoice['id']}")
    made = client.v1.invoices.update(
        invoice_id,
        params={"description": invoice["description"], "metadata": {"sample_invoice_id": invoice["id"]}},
    )
    if made.status != "paid":
        raise RuntimeError(f"invoice for {invoice['id']} is {made.status}, not paid")
    return invoice_id
