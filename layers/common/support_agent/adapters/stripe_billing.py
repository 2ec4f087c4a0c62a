"""Billing on Stripe, through the official `stripe` SDK (implements ports.Billing).

Which Stripe customer is ours: the customer's email (from the CRM) is looked up with the exact,
strongly consistent `GET /v1/customers?email=` filter. A Stripe customer whose metadata names another CRM
customer (`metadata[crm_customer_id]`, key configurable) is never taken; one naming ours wins over untagged
ones; two equally good candidates are refused as ambiguous. (Customer *search* by metadata would avoid the
email, but search is eventually consistent and not available everywhere.)

Invoices: the customer's most recent `max_invoices` invoices, drafts left out. Each paid invoice's payments
come from `GET /v1/invoice_payments?invoice=…&status=paid` (API versions from 2025-03-31 on, which the SDK
pins); responses that still carry the older `invoice.payment_intent` / `invoice.charge` fields are read from
those instead. The already-refunded amount is the sum of the payment's refunds that are not failed or
canceled (pending ones count: Stripe reserves them too).

Refunds go to the payment (PaymentIntent, or a bare Charge) of a paid invoice, with Stripe's
`idempotency_key` set to ours and the key also kept in the refund's metadata. Stripe forgets idempotency
keys after 24 hours, while an approval can wait for days, so before creating a refund the adapter looks for
one carrying the same key in its metadata and returns it: a repeated call returns the first refund for as
long as it exists. An invoice paid in several payments is refunded from one payment with enough left;
a refund that would need splitting is refused (a person can split it in the dashboard).

Money: Stripe amounts are integers in the currency's smallest unit (cents for USD, whole yen for the
zero-decimal JPY), and so are our `amount_cents` fields: values pass through unchanged, never scaled by 100.

Every failure surfaces as AdapterError with a message written here (the error kind, Stripe's error code and
request id at most), never Stripe's own text or the API key. Timeouts and retries are the SDK's: the HTTP
client's timeout and `max_network_retries` (retried POSTs reuse the same idempotency key).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import stripe

from support_agent import clock
from support_agent.adapters.ports import AdapterError
from support_agent.models import Customer, Invoice, Refund

RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]
COUNTED_REFUND = {"pending", "requires_action", "succeeded"}  # failed and canceled give the money back
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,80}")
_CODE_MESSAGES = {
    "amount_too_large": "the amount is more than what is left to refund",
    "charge_already_refunded": "the payment is already fully refunded",
    "charge_disputed": "the payment is disputed, so it can only be settled through the dispute",
    "charge_exceeds_source_limit": "Stripe's refund limit for this account was reached",
    "insufficient_funds": "the Stripe balance cannot cover the refund",
    "refund_disputed_payment": "the payment is disputed, so it can only be settled through the dispute",
}


class CustomerDirectory(Protocol):
    """Where a customer's email comes from (ports.Crm fits)."""

    def get_customer(self, customer_id: str) -> Customer | None: ...


@dataclass(frozen=True)
class _Payment:
    kind: Literal["payment_intent", "charge"]
    id: str
    amount: int  # what was paid through it for this invoice, smallest currency unit


class StripeBilling:
    """ports.Billing over the Stripe API. `api_key` is a secret (restricted) key, passed in by the caller."""

    def __init__(
        self,
        api_key: str,
        directory: CustomerDirectory,
        *,
        api_base: str | None = None,
        timeout: float = 10.0,
        max_network_retries: int = 2,
        metadata_key: str = "crm_customer_id",
        max_invoices: int = 12,
        refund_reason: RefundReason | None = "requested_by_customer",
    ) -> None:
        if not api_key:
            raise AdapterError("Stripe is not configured (no API key)")
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=(min(timeout, 3.05), timeout)),
        )
        self._directory = directory
        self._metadata_key = metadata_key
        self._max_invoices = max_invoices
        self._refund_reason = refund_reason
        self._customers: dict[str, str] = {}  # our id → Stripe id, for the life of a warm Lambda

    # --- the port ------------------------------------------------------------------------------------

    def list_invoices(self, customer_id: str) -> list[Invoice]:
        stripe_id = self._stripe_customer(customer_id)
        if stripe_id is None:
            return []
        with _errors("listing invoices"):
            page = self._client.v1.invoices.list(params={"customer": stripe_id, "limit": self._max_invoices})
            invoices = [i.to_dict() for i in page.data]
        out = []
        for inv in invoices:
            if inv.get("status") == "draft":
                continue
            refunded = 0
            if inv.get("status") == "paid":
                refunded = sum(_refunded(self._refunds(p)) for p in self._payments(inv))
            out.append(_invoice(customer_id, inv, refunded))
        return sorted(out, key=lambda i: i.period, reverse=True)

    def refund(self, customer_id: str, invoice_id: str, amount_cents: int, idempotency_key: str) -> Refund:
        invoice = self._own_invoice(customer_id, invoice_id)
        payments = self._payments(invoice)
        refunds = {p: self._refunds(p) for p in payments}
        for found in refunds.values():
            for r in found:
                if (r.get("metadata") or {}).get("idempotency_key") == idempotency_key:
                    return _refund(customer_id, invoice_id, idempotency_key, r)
        if invoice.get("status") != "paid" or not payments:
            raise AdapterError(f"invoice {invoice_id} has no payment to refund")
        room = {p: p.amount - _refunded(refunds[p]) for p in payments}
        left = sum(room.values())
        currency = str(invoice.get("currency", "")).upper()
        if not 0 < amount_cents <= left:
            raise AdapterError(
                f"refund of {amount_cents} is outside 1..{left} for {invoice_id} "
                f"(amounts in the smallest unit of {currency})"
            )
        target = next((p for p in payments if room[p] >= amount_cents), None)
        if target is None:
            raise AdapterError(
                f"invoice {invoice_id} was paid in several payments and no single one has {amount_cents} left: "
                "a person has to split this refund"
            )
        metadata = {
            "idempotency_key": idempotency_key,
            "invoice": invoice_id,
            self._metadata_key: customer_id,
        }
        params: stripe.params.RefundCreateParams = {"amount": amount_cents, "metadata": metadata}
        if target.kind == "payment_intent":
            params["payment_intent"] = target.id
        else:
            params["charge"] = target.id
        if self._refund_reason:
            params["reason"] = self._refund_reason
        with _errors("refunding"):
            made = self._client.v1.refunds.create(params=params, options={"idempotency_key": idempotency_key})
        return _refund(customer_id, invoice_id, idempotency_key, made.to_dict())

    # --- Stripe lookups ------------------------------------------------------------------------------

    def _stripe_customer(self, customer_id: str) -> str | None:
        if customer_id in self._customers:
            return self._customers[customer_id]
        customer = self._directory.get_customer(customer_id)
        if customer is None or not customer.email:
            return None
        with _errors("finding the Stripe customer"):
            found = [
                c.to_dict() for c in self._client.v1.customers.list(params={"email": customer.email}).data
            ]
        tags = [(c, (c.get("metadata") or {}).get(self._metadata_key)) for c in found if not c.get("deleted")]
        candidates = [c for c, tag in tags if tag in (None, "", customer_id)]
        tagged = [c for c, tag in tags if tag == customer_id]
        chosen = tagged or candidates
        if len(chosen) > 1:
            raise AdapterError(
                f"several Stripe customers share the email of {customer_id}: "
                f"set metadata {self._metadata_key}={customer_id} on the right one"
            )
        if not chosen:
            return None
        self._customers[customer_id] = str(chosen[0]["id"])
        return self._customers[customer_id]

    def _own_invoice(self, customer_id: str, invoice_id: str) -> dict[str, Any]:
        """The invoice, if it is this customer's; the same refusal whether it is missing or someone else's."""
        refusal = AdapterError(f"invoice {invoice_id} does not belong to customer {customer_id}")
        stripe_id = self._stripe_customer(customer_id)
        if stripe_id is None or not _SAFE_TOKEN.fullmatch(invoice_id):
            raise refusal
        try:
            invoice = self._client.v1.invoices.retrieve(invoice_id).to_dict()
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise refusal from None
            raise _adapter_error(exc, "reading the invoice") from exc
        except stripe.StripeError as exc:
            raise _adapter_error(exc, "reading the invoice") from exc
        if _id(invoice.get("customer")) != stripe_id:
            raise refusal
        return invoice

    def _payments(self, invoice: dict[str, Any]) -> list[_Payment]:
        """The paid payments of an invoice, oldest first."""
        if "payment_intent" in invoice or "charge" in invoice:  # shape of API versions before 2025-03-31
            paid = int(invoice.get("amount_paid") or 0)
            pi, charge = _id(invoice.get("payment_intent")), _id(invoice.get("charge"))
            if paid <= 0:
                return []
            if pi:
                return [_Payment("payment_intent", pi, paid)]
            return [_Payment("charge", charge, paid)] if charge else []
        listed = (invoice.get("payments") or {}).get("data")
        if listed is None:
            with _errors("reading the invoice's payments"):
                page = self._client.v1.invoice_payments.list(
                    params={"invoice": str(invoice["id"]), "status": "paid", "limit": 100}
                )
                listed = [p.to_dict() for p in page.data]
        out = []
        for ip in sorted(listed, key=lambda p: int(p.get("created") or 0)):
            if ip.get("status") != "paid":
                continue
            payment = ip.get("payment") or ip  # (some preview versions put the ids on the object itself)
            amount = int(ip.get("amount_paid") or 0)
            pi, charge = _id(payment.get("payment_intent")), _id(payment.get("charge"))
            if amount > 0 and pi:
                out.append(_Payment("payment_intent", pi, amount))
            elif amount > 0 and charge:
                out.append(_Payment("charge", charge, amount))
            # payment_record payments were made outside Stripe: there is nothing to refund through it
        return out

    def _refunds(self, payment: _Payment) -> list[dict[str, Any]]:
        with _errors("reading earlier refunds"):
            if payment.kind == "payment_intent":
                page = self._client.v1.refunds.list(params={"payment_intent": payment.id, "limit": 100})
            else:
                page = self._client.v1.refunds.list(params={"charge": payment.id, "limit": 100})
            return [r.to_dict() for r in page.data]


# --- mapping ---------------------------------------------------------------------------------------------


def _id(value: Any) -> str:
    """An expandable field's id, whether it came as an id or as the expanded object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _refunded(refunds: list[dict[str, Any]]) -> int:
    return sum(int(r.get("amount") or 0) for r in refunds if r.get("status", "succeeded") in COUNTED_REFUND)


def _date(ts: Any) -> datetime:
    return datetime.fromtimestamp(int(ts), UTC)


def _invoice(customer_id: str, inv: dict[str, Any], refunded: int) -> Invoice:
    lines = (inv.get("lines") or {}).get("data") or []
    first = lines[0] if lines else {}
    start = (first.get("period") or {}).get("start") or inv.get("period_start") or inv["created"]
    paid_at = (inv.get("status_transitions") or {}).get("paid_at")
    status = str(inv.get("status") or "open")
    return Invoice(
        id=str(inv["id"]),
        customer_id=customer_id,
        period=_date(start).strftime("%Y-%m"),
        description=str(inv.get("description") or first.get("description") or inv.get("number") or inv["id"]),
        amount_cents=int((inv.get("amount_paid") if status == "paid" else inv.get("total")) or 0),
        status=status,
        paid_at=_date(paid_at).date().isoformat() if paid_at else None,
        refunded_cents=refunded,
        currency=str(inv.get("currency") or "usd").lower(),
    )


def _refund(customer_id: str, invoice_id: str, key: str, r: dict[str, Any]) -> Refund:
    return Refund(
        id=str(r["id"]),
        customer_id=customer_id,
        invoice_id=invoice_id,
        amount_cents=int(r["amount"]),
        currency=str(r.get("currency") or "usd").lower(),
        idempotency_key=key,
        created_at=clock.iso(_date(r.get("created") or clock.epoch())),
    )


# --- errors ----------------------------------------------------------------------------------------------


@contextmanager
def _errors(doing: str) -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as exc:
        raise _adapter_error(exc, doing) from exc


def _adapter_error(exc: stripe.StripeError, doing: str) -> AdapterError:
    """A message built here from the error's kind, code and request id: never Stripe's text or our key."""
    code = exc.code if isinstance(exc.code, str) and _SAFE_TOKEN.fullmatch(exc.code) else None
    request = (
        exc.request_id if isinstance(exc.request_id, str) and _SAFE_TOKEN.fullmatch(exc.request_id) else None
    )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        text = f"Stripe refused our credentials while {doing}"
    elif isinstance(exc, stripe.RateLimitError):
        text = f"Stripe is rate-limiting us: {doing} did not happen, try again later"
    elif isinstance(exc, stripe.APIConnectionError):
        text = f"Stripe did not answer while {doing}; trying again with the same key cannot refund twice"
    elif isinstance(exc, stripe.IdempotencyError):
        text = f"Stripe refused {doing}: this idempotency key was already used for a different request"
    elif code in _CODE_MESSAGES:
        text = f"Stripe refused {doing}: {_CODE_MESSAGES[code]}"
    elif isinstance(exc, stripe.InvalidRequestError) and exc.http_status == 404:
        text = f"Stripe has no such object ({doing})"
    elif isinstance(exc, stripe.InvalidRequestError | stripe.CardError):
        text = f"Stripe refused {doing}" + (f" ({code})" if code else "")
    else:
        text = f"Stripe failed while {doing}"
    return AdapterError(text + (f" [request {request}]" if request else ""))
