"""Embedded adapters: a small helpdesk, CRM, billing and account system in one DynamoDB table.

They ship with sample data (data/sample_data.json) so the whole pipeline runs without third-party
accounts. Keys: CUSTOMER#id with PROFILE / ORDER#id / INVOICE#id; EMAIL#address → customer id;
TICKET#id with TICKET / COMMENT#time#n; REFUND#key; OUTBOX#key for mails the system sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from support_agent import aws, clock
from support_agent.adapters.ports import AdapterError, Adapters, KnowledgeBase
from support_agent.models import Comment, Customer, Invoice, Order, Refund, Ticket

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "data" / "sample_data.json"
PROFILE_FIELDS = {"name", "notifications"}


def _read_failed(exc: Exception) -> AdapterError:
    """A failed read as the port reports it (as the HTTP adapters do): the reason, nothing else."""
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    return AdapterError(f"the embedded store could not be read ({code or type(exc).__name__})")


class _Table(aws.DynamoTable):
    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        """The item as plain data (key columns left out), or None."""
        try:
            item = self.client.get_item(TableName=self.table, Key=_k(pk, sk)).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise _read_failed(exc) from None
        return aws.record(item, drop=_KIND) if item else None

    def query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        try:
            resp = self.client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                ExpressionAttributeValues={":pk": {"S": pk}, ":p": {"S": prefix}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise _read_failed(exc) from None
        return [aws.record(i, drop=_KIND) for i in resp.get("Items", [])]

    def put(self, pk: str, sk: str, data: dict[str, Any], only_new: bool = False) -> bool:
        """Write an item; with only_new, return False instead of overwriting."""
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": {**_k(pk, sk), **aws.to_item(data)}}
        if only_new:
            kwargs["ConditionExpression"] = "attribute_not_exists(pk)"
        try:
            self.client.put_item(**kwargs)
        except Exception as exc:
            if only_new and aws.is_conditional_failure(exc):
                return False
            raise
        return True


def _k(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


_KIND = frozenset({"kind"})


class EmbeddedTickets(_Table):
    """A minimal helpdesk: tickets, public replies, internal notes, status and assignment."""

    def ensure_ticket(self, ticket: Ticket) -> None:
        # Tickets of every source share this helpdesk: each lives under its namespaced key (`zendesk:4829`),
        # which is the id every other method takes, so a generic "4829" never reads Zendesk's #4829.
        self.put(
            f"TICKET#{ticket.key}",
            "TICKET",
            {
                "subject": ticket.subject,
                "status": "new",
                "requester": ticket.requester.email or ticket.requester.id,
                "assignee": None,
            },
            only_new=True,
        )

    def list_comments(self, ticket_id: str) -> list[Comment]:
        items = self.query(f"TICKET#{ticket_id}", "COMMENT#")
        return [Comment.model_validate(i) for i in items]

    def _once(self, ticket_id: str, key: str, items: list[dict[str, Any]]) -> None:
        """Write `items` with a DONE#key marker, all or nothing: once per key, only on a known ticket."""
        pk = f"TICKET#{ticket_id}"
        marker = {
            "Put": {
                "TableName": self.table,
                "Item": {**_k(pk, f"DONE#{key}"), **aws.to_item({"created_at": clock.iso()})},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        try:
            self.client.transact_write_items(TransactItems=[marker, *items])  # type: ignore[list-item]
        except Exception as exc:
            if not aws.is_conditional_failure(exc):
                raise
            if self.get(pk, f"DONE#{key}") is None:
                raise AdapterError(f"no ticket {ticket_id}") from None

    def _comment(self, ticket_id: str, author: str, public: bool, body: str, key: str) -> None:
        now = clock.iso()
        data = {"author": author, "public": public, "body": body, "created_at": now}
        pk = f"TICKET#{ticket_id}"
        exists = {
            "TableName": self.table,
            "Key": _k(pk, "TICKET"),
            "ConditionExpression": "attribute_exists(pk)",
        }
        item = {**_k(pk, f"COMMENT#{now}#{key}"), **aws.to_item(data)}
        self._once(
            ticket_id, key, [{"ConditionCheck": exists}, {"Put": {"TableName": self.table, "Item": item}}]
        )

    def respond(self, ticket_id: str, reply: str, note: str, status: str, idempotency_key: str) -> None:
        now = clock.iso()
        pk = f"TICKET#{ticket_id}"

        def comment(public: bool, body: str, suffix: str) -> Any:
            data = {"author": "agent:support-agent", "public": public, "body": body, "created_at": now}
            item = {**_k(pk, f"COMMENT#{now}#{idempotency_key}{suffix}"), **aws.to_item(data)}
            return {"Put": {"TableName": self.table, "Item": item}}

        self._once(
            ticket_id,
            idempotency_key,
            [
                comment(True, reply, ""),
                comment(False, note, "-note"),
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _k(pk, "TICKET"),
                        "UpdateExpression": "SET #s = :s",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":s": {"S": status}},
                    }
                },
            ],
        )

    def already_answered_by_human(self, ticket_id: str) -> bool:
        """A public comment by staff (`staff:` authors) other than the agent."""
        return any(c.public and c.author.startswith("staff:") for c in self.list_comments(ticket_id))

    def add_note(self, ticket_id: str, body: str, idempotency_key: str) -> None:
        self._comment(ticket_id, "agent:support-agent", False, body, idempotency_key)

    def _update(self, ticket_id: str, field: str, value: str) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_k(f"TICKET#{ticket_id}", "TICKET"),
                UpdateExpression="SET #f = :v",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#f": field},
                ExpressionAttributeValues={":v": {"S": value}},
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                raise AdapterError(f"no ticket {ticket_id}") from None
            raise

    def assign(self, ticket_id: str, group: str) -> None:
        self._update(ticket_id, "assignee", group)

    def get_state(self, ticket_id: str) -> dict[str, Any]:
        """Status, requester and assignee of a ticket (for the demo and the tests)."""
        return self.get(f"TICKET#{ticket_id}", "TICKET") or {}


class EmbeddedCrm(_Table):
    def get_customer(self, customer_id: str) -> Customer | None:
        item = self.get(f"CUSTOMER#{customer_id}", "PROFILE")
        return Customer.model_validate(item) if item else None

    def find_customer_by_email(self, email: str) -> Customer | None:
        link = self.get(f"EMAIL#{email.strip().lower()}", "CUSTOMER")
        return self.get_customer(link["customer_id"]) if link else None

    def list_orders(self, customer_id: str) -> list[Order]:
        items = self.query(f"CUSTOMER#{customer_id}", "ORDER#")
        return sorted((Order.model_validate(i) for i in items), key=lambda o: o.ordered_at, reverse=True)


class EmbeddedBilling(_Table):
    def list_invoices(self, customer_id: str) -> list[Invoice]:
        items = self.query(f"CUSTOMER#{customer_id}", "INVOICE#")
        return sorted((Invoice.model_validate(i) for i in items), key=lambda i: i.period, reverse=True)

    def refund(self, customer_id: str, invoice_id: str, amount_cents: int, idempotency_key: str) -> Refund:
        previous = self.get(f"REFUND#{idempotency_key}", "REFUND")
        if previous:
            return Refund.model_validate(previous)
        invoice = self.get(f"CUSTOMER#{customer_id}", f"INVOICE#{invoice_id}")
        if invoice is None:
            raise AdapterError(f"invoice {invoice_id} does not belong to customer {customer_id}")
        refundable = int(invoice["amount_cents"]) - int(invoice.get("refunded_cents", 0))
        if not 0 < amount_cents <= refundable:
            raise AdapterError(f"refund of {amount_cents} cents is outside 1..{refundable} for {invoice_id}")
        refund = Refund(
            id=f"re_{idempotency_key[-16:]}",
            customer_id=customer_id,
            invoice_id=invoice_id,
            amount_cents=amount_cents,
            idempotency_key=idempotency_key,
            created_at=clock.iso(),
            currency=str(invoice.get("currency", "usd")),
        )
        # The refund record and the invoice change commit together, and only once per key.
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                **_k(f"REFUND#{idempotency_key}", "REFUND"),
                                **aws.to_item(refund.model_dump()),
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _k(f"CUSTOMER#{customer_id}", f"INVOICE#{invoice_id}"),
                            "UpdateExpression": "ADD refunded_cents :a",
                            "ConditionExpression": "refunded_cents <= :room",
                            "ExpressionAttributeValues": {
                                ":a": {"N": str(amount_cents)},
                                ":room": {"N": str(int(invoice["amount_cents"]) - amount_cents)},
                            },
                        }
                    },
                ]
            )
        except Exception as exc:
            if not aws.is_conditional_failure(exc):
                raise
            again = self.get(f"REFUND#{idempotency_key}", "REFUND")
            if again:
                return Refund.model_validate(again)
            raise AdapterError(f"invoice {invoice_id} no longer has {amount_cents} cents to refund") from None
        return refund

    def refunds(self) -> list[Refund]:
        """Every refund made (for the demo's summary and the tests)."""
        resp = self.client.scan(
            TableName=self.table,
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": "REFUND#"}},
        )
        return [Refund.model_validate(aws.record(i)) for i in resp.get("Items", [])]


class EmbeddedAccounts(_Table):
    def send_password_reset(self, customer_id: str, idempotency_key: str) -> None:
        customer = self.get(f"CUSTOMER#{customer_id}", "PROFILE")
        if customer is None:
            raise AdapterError(f"no customer {customer_id}")
        if customer.get("status") == "pending_deletion":
            raise AdapterError(f"the account of customer {customer_id} is being deleted")
        self.put(
            f"OUTBOX#{idempotency_key}",
            "MAIL",
            {"to": customer["email"], "template": "password_reset", "created_at": clock.iso()},
            only_new=True,
        )

    def update_profile(self, customer_id: str, fields: dict[str, Any]) -> Customer:
        unknown = set(fields) - PROFILE_FIELDS
        if unknown:
            raise AdapterError(f"fields {sorted(unknown)} cannot be changed here")
        if self.get(f"CUSTOMER#{customer_id}", "PROFILE") is None:
            raise AdapterError(f"no customer {customer_id}")
        resp = self.client.update_item(
            TableName=self.table,
            Key=_k(f"CUSTOMER#{customer_id}", "PROFILE"),
            ReturnValues="ALL_NEW",
            **aws.set_fields(fields),
        )
        return Customer.model_validate(aws.record(resp["Attributes"], drop=_KIND))

    def delete_account(self, customer_id: str, idempotency_key: str) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=_k(f"CUSTOMER#{customer_id}", "PROFILE"),
            UpdateExpression="SET #s = :s, deletion_key = :k",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "pending_deletion"}, ":k": {"S": idempotency_key}},
        )


def seed(table: str, path: Path = SAMPLE_DATA, client: DynamoDBClient | None = None) -> int:
    """Load the sample customers, orders, invoices and tickets; returns the number of items written."""
    data = json.loads(path.read_text(encoding="utf-8"))
    store = _Table(table, client)
    count = 0
    for c in data["customers"]:
        store.put(f"CUSTOMER#{c['id']}", "PROFILE", c)
        store.put(f"EMAIL#{c['email'].lower()}", "CUSTOMER", {"customer_id": c["id"]})
        count += 2
    for o in data["orders"]:
        store.put(f"CUSTOMER#{o['customer_id']}", f"ORDER#{o['id']}", o)
        count += 1
    for i in data["invoices"]:
        store.put(f"CUSTOMER#{i['customer_id']}", f"INVOICE#{i['id']}", i)
        count += 1
    for t in data["tickets"]:
        key = f"TICKET#{t.get('source', 'generic')}:{t['id']}"  # namespaced, as `Ticket.key`
        store.put(key, "TICKET", {"subject": t["subject"], "status": t["status"]})
        for n, comment in enumerate(t["comments"]):
            store.put(key, f"COMMENT#{comment['created_at']}#{n}", comment)
        count += 1 + len(t["comments"])
    return count


def embedded_adapters(table: str, kb: KnowledgeBase) -> Adapters:
    """Every port on the embedded table, with the given help center."""
    return Adapters(
        tickets=EmbeddedTickets(table),
        crm=EmbeddedCrm(table),
        billing=EmbeddedBilling(table),
        accounts=EmbeddedAccounts(table),
        kb=kb,
    )
