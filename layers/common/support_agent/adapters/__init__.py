"""Ports to the systems the agent works with, and their implementations.

Each port is a small Protocol; `embedded` implements them over one DynamoDB table with sample data (the
default and the demo), `knowledge` searches Markdown help articles. Real third-party adapters (Zendesk,
Stripe, Cognito) implement the same Protocols.
"""

from support_agent.adapters.ports import Accounts, Adapters, Billing, Crm, KnowledgeBase, Tickets

__all__ = ["Accounts", "Adapters", "Billing", "Crm", "KnowledgeBase", "Tickets"]
