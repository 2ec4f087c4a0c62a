"""Who the requester is: the helpdesk's verified requester address, read as the mailbox it is, bound once
per session to the one customer record with that address.

The address is normalised with NFKC and casefolded, then compared whole: no dots or `+tags` are dropped,
and nothing is folded into another mailbox. An address that only looks like another one is flagged, not
normalised into it: one that NFKC would change (the Kelvin sign `K`, full-width letters, ligatures), one
that mixes scripts within its local part or a label of its domain (a Cyrillic `е` in a Latin name), one with
invisible or control characters, or one whose casefolding turns a non-ASCII letter into ASCII (`ß` → `ss`).

A `customer_id` on the ticket is a hint: it must name the requester's own record, never another one. A
requester known only by a helpdesk user id has no mailbox, so no record is bound (the agent can still
answer from the help center; every customer tool is refused).
"""

from __future__ import annotations

import re
import unicodedata

from support_agent.adapters.ports import AdapterError, Crm
from support_agent.models import Customer, RequesterBinding, Ticket
from support_agent.rules.policy import bound_id

# Scripts that one language writes together (Japanese: kanji with kana; Korean: hangul with hanja).
_SCRIPT_FAMILY = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "CJK": "CJK", "IDEOGRAPHIC": "CJK"}
_HINT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")


class UnsafeAddress(ValueError):
    """An address that could pass for another mailbox; the message says why."""


def _script(ch: str) -> str | None:
    """The script of a letter or digit (None for punctuation, marks and ASCII digits)."""
    category = unicodedata.category(ch)
    if category[0] not in "LN" or (ch.isascii() and not ch.isalpha()):
        return None
    word = unicodedata.name(ch, "UNKNOWN").split()[0]
    return _SCRIPT_FAMILY.get(word, word)


def address_problem(address: str) -> str | None:
    """Why `address` could pass for another mailbox, or None when it is safe to compare."""
    if unicodedata.normalize("NFKC", address) != address:
        return (
            "it is not NFKC-stable (compatibility characters such as the Kelvin sign or full-width letters)"
        )
    for ch in address:
        if unicodedata.category(ch)[0] in "CZ":
            return f"it contains an invisible, space or control character (U+{ord(ch):04X})"
    if address.count("@") != 1:
        return "it does not have exactly one @"
    local, domain = address.split("@")
    for part, name in [(local, "local part"), *((label, "domain") for label in domain.split("."))]:
        scripts = {s for s in map(_script, part) if s}
        if len(scripts) > 1:
            return f"its {name} mixes scripts ({', '.join(sorted(scripts))})"
    for ch in address:
        if not ch.isascii() and any(c.isascii() for c in ch.casefold()):
            return f"casefolding turns {ch!r} (U+{ord(ch):04X}) into ASCII letters"
    return None


def mailbox(address: str) -> str:
    """The mailbox an address names: NFKC + casefold. Raises UnsafeAddress for a look-alike."""
    text = address.strip()
    problem = address_problem(text)
    if problem:
        raise UnsafeAddress(problem)
    return unicodedata.normalize("NFKC", text.casefold())


def same_mailbox(address: str, key: str) -> bool:
    """True when `address` names exactly the mailbox `key` (a look-alike never does)."""
    try:
        return mailbox(address) == key
    except UnsafeAddress:
        return False


def bind(ticket: Ticket, crm: Crm) -> tuple[RequesterBinding, Customer | None]:
    """Resolve the requester to their customer record, once: (the binding, the record when bound)."""
    raw = ticket.requester.email
    hint = ticket.customer_id
    if raw is None:  # known only by a helpdesk user id (phone, messaging): no mailbox, so no record
        detail = (
            f"the requester has no e-mail (helpdesk user {ticket.requester.id}): no customer record is bound"
        )
        return RequesterBinding(mailbox="", status="no_record", hint=hint, detail=detail), None
    try:
        key = mailbox(raw)
    except UnsafeAddress as exc:
        # !a spells out every non-ASCII character (\u212a), so people see what the address really is.
        detail = f"the requester's address {raw!a} is refused: {exc}"
        return RequesterBinding(mailbox=raw, status="unsafe_address", hint=hint, detail=detail), None
    try:
        found = crm.find_customer_by_email(key)
    except AdapterError as exc:
        detail = f"the CRM could not be asked: {exc}"[:300]
        return RequesterBinding(mailbox=key, status="no_record", hint=hint, detail=detail), None
    # The CRM's own matching may be looser (lower() folds the Kelvin sign): only the same mailbox counts.
    record = found if found is not None and same_mailbox(found.email, key) else None
    if hint is not None:
        if record is None and _HINT_RE.match(hint) and bound_id(hint):
            hinted = crm.get_customer(hint)
            record = hinted if hinted is not None and same_mailbox(hinted.email, key) else None
        if record is None or record.id != hint:
            detail = (
                f"the ticket names customer {hint}, which is not the record of the requester's address"
                + (f" ({record.id} is)" if record is not None else "")
            )
            return RequesterBinding(mailbox=key, status="hint_mismatch", hint=hint, detail=detail), None
    if record is None or bound_id(record.id) is None:
        detail = "no customer record has the requester's address"
        return RequesterBinding(mailbox=key, status="no_record", hint=hint, detail=detail), None
    binding = RequesterBinding(mailbox=key, status="bound", customer_id=record.id, hint=hint)
    return binding, record
