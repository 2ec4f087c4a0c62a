"""Zendesk: the `Tickets` port over the Support API v2, and the `KnowledgeBase` port over the Help Center API.

Plain HTTP through httpx2 (adapters/http.py), not zenpy: we use a dozen endpoints, need a deadline on
every call, a retry policy that never re-sends a comment blindly, and strict typing; zenpy would add
requests and its own retry and caching behaviour to the layer for little gain.

No double posts. A ticket update carries no idempotency key, so each comment we post carries one as a
tag: `ai_key_<sha256(our key)[:20]>` in the same update as the comment (one update is applied whole or
not at all). Before posting we read the ticket; a ticket already carrying the tag was answered by an
earlier try (a redelivery, or a crash after Zendesk applied the update but before we recorded it). The
update is sent with `safe_update` and the `updated_stamp` we read, so a concurrent try that posted in
between makes ours fail with 409; we then read again and find the tag. A write whose outcome is unknown
(timeout, dropped connection, 5xx) is never re-sent as is: we read again and let the tag decide.

No loops. Our replies carry `ai_answered` (handoffs `ai_escalated`); the intake trigger must exclude
those tags and fire on "Ticket is created" only. `is_agent_author` tells whether a comment's author is
us or staff, and `already_answered_by_human` whether a person has replied publicly: the agent step is
meant to check it right before it posts (OutcomeWriter.respond), and intake before it starts a session
for anything but a new ticket.
"""

from __future__ import annotations

import hashlib
import html
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx2

from support_agent.adapters.http import (
    Conflict,
    JsonApi,
    NotFound,
    OutcomeUnknown,
    Remaining,
    RetryPolicy,
)
from support_agent.adapters.ports import AdapterError
from support_agent.models import Article, Comment, Ticket

ANSWERED_TAG = "ai_answered"
ESCALATED_TAG = "ai_escalated"
KEY_TAG_PREFIX = "ai_key_"
AGENT_AUTHOR = "agent:support-agent"
STAFF_ROLES = frozenset({"agent", "admin"})
REPLY_STATUSES = frozenset({"open", "pending", "hold", "solved"})
MAX_COMMENT_PAGES = 20
_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def key_tag(idempotency_key: str) -> str:
    """The tag that marks the update made for `idempotency_key` (Zendesk tags: lowercase, no spaces)."""
    return KEY_TAG_PREFIX + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]


def zendesk_url(subdomain: str) -> str:
    if not _SUBDOMAIN.match(subdomain):
        raise ValueError("a Zendesk subdomain is lowercase letters, digits and dashes")
    return f"https://{subdomain}.zendesk.com"


@dataclass(frozen=True)
class ZendeskOrganization:
    id: str
    name: str
    domain_names: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    organization_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ZendeskUser:
    id: str
    name: str
    email: str | None
    role: str
    external_id: str | None = None
    locale: str | None = None
    time_zone: str | None = None
    tags: list[str] = field(default_factory=list)
    user_fields: dict[str, Any] = field(default_factory=dict)
    organization_id: str | None = None

    @classmethod
    def from_api(cls, u: Mapping[str, Any]) -> ZendeskUser:
        org = u.get("organization_id")
        return cls(
            id=str(u["id"]),
            name=str(u.get("name") or ""),
            email=u.get("email") or None,
            role=str(u.get("role") or "end-user"),
            external_id=u.get("external_id") or None,
            locale=u.get("locale"),
            time_zone=u.get("time_zone"),
            tags=list(u.get("tags") or []),
            user_fields=dict(u.get("user_fields") or {}),
            organization_id=str(org) if org else None,
        )


@dataclass(frozen=True)
class Requester:
    """A ticket's requester as the agent may see them: the user and their organization."""

    user: ZendeskUser
    organization: ZendeskOrganization | None


@dataclass(frozen=True)
class TicketSummary:
    id: str
    subject: str
    status: str
    created_at: str
    updated_at: str
    tags: list[str] = field(default_factory=list)


def _http(
    base_url: str,
    email: str | None,
    api_token: str | None,
    *,
    timeout: float,
    remaining: Remaining | None,
    retry: RetryPolicy | None,
    transport: httpx2.BaseTransport | None,
    sleep: Callable[[float], None],
) -> JsonApi:
    auth = httpx2.BasicAuth(f"{email}/token", api_token) if email and api_token else None
    return JsonApi(
        "Zendesk",
        base_url,
        auth=auth,
        timeout=timeout,
        remaining=remaining,
        retry=retry,
        transport=transport,
        sleep=sleep,
        secrets=(api_token or "",),
    )


class ZendeskTickets:
    """`Tickets` on a Zendesk account, authenticated as one agent (email + API token)."""

    def __init__(
        self,
        base_url: str,
        email: str,
        api_token: str,
        *,
        group_ids: Mapping[str, int] | None = None,
        assignee_ids: Mapping[str, int] | None = None,
        default_group_id: int | None = None,
        timeout: float = 10.0,
        remaining: Remaining | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`group_ids` maps our handoff names (e.g. tier-2-humans) to Zendesk group ids; `assignee_ids`
        maps names such as `slack:U0LEAD` to Zendesk agent ids; others go to `default_group_id`."""
        self.api = _http(
            base_url,
            email,
            api_token,
            timeout=timeout,
            remaining=remaining,
            retry=retry,
            transport=transport,
            sleep=sleep,
        )
        self.group_ids = dict(group_ids or {})
        self.assignee_ids = dict(assignee_ids or {})
        self.default_group_id = default_group_id
        self._me: ZendeskUser | None = None
        self._users: dict[str, ZendeskUser] = {}

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any], **options: Any) -> ZendeskTickets:
        """From the Secrets Manager JSON: subdomain (or base_url), email, api_token, group_ids, default_group_id."""
        base = secret.get("base_url") or zendesk_url(str(secret.get("subdomain", "")))
        if not secret.get("email") or not secret.get("api_token"):
            raise ValueError("the Zendesk secret needs email and api_token")
        return cls(
            str(base),
            str(secret["email"]),
            str(secret["api_token"]),
            group_ids={str(k): int(v) for k, v in (secret.get("group_ids") or {}).items()},
            assignee_ids={str(k): int(v) for k, v in (secret.get("assignee_ids") or {}).items()},
            default_group_id=int(secret["default_group_id"]) if secret.get("default_group_id") else None,
            **options,
        )

    # --- reads -----------------------------------------------------------------------------------------

    def _tid(self, ticket_id: str) -> str:
        """The Zendesk id of `zendesk:4829` (or a bare `4829`); a key of another source is none of ours."""
        source, _, number = ticket_id.rpartition(":")
        if source not in {"", "zendesk"} or not number.isdigit():
            raise NotFound(f"Zendesk: {ticket_id!r} is not a Zendesk ticket id")
        return number

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        """The raw ticket (raises NotFound, an AdapterError, for an unknown id)."""
        tid = self._tid(ticket_id)
        body = self.api.request("GET", f"/api/v2/tickets/{tid}", what=f"ticket {tid}")
        ticket: dict[str, Any] = body["ticket"]
        return ticket

    def ensure_ticket(self, ticket: Ticket) -> None:
        """Zendesk tickets exist before we hear of them: check it is there (and not closed). A ticket from
        another source is not a Zendesk ticket, whatever its id."""
        found = self.ticket(ticket.key)
        if found.get("status") == "closed":
            raise AdapterError(f"Zendesk: ticket {ticket.id} is closed")

    def me(self) -> ZendeskUser:
        """The agent our API token belongs to (the author of our comments)."""
        if self._me is None:
            self._me = ZendeskUser.from_api(self.api.request("GET", "/api/v2/users/me")["user"])
        return self._me

    def user(self, user_id: str) -> ZendeskUser:
        if user_id not in self._users:
            if not user_id.isdigit():
                raise NotFound(f"Zendesk: {user_id!r} is not a Zendesk user id")
            body = self.api.request("GET", f"/api/v2/users/{user_id}", what=f"user {user_id}")
            self._users[user_id] = ZendeskUser.from_api(body["user"])
        return self._users[user_id]

    def organization(self, organization_id: str) -> ZendeskOrganization:
        body = self.api.request(
            "GET", f"/api/v2/organizations/{organization_id}", what=f"organization {organization_id}"
        )
        o = body["organization"]
        return ZendeskOrganization(
            id=str(o["id"]),
            name=str(o.get("name") or ""),
            domain_names=list(o.get("domain_names") or []),
            tags=list(o.get("tags") or []),
            organization_fields=dict(o.get("organization_fields") or {}),
        )

    def requester(self, ticket_id: str) -> Requester:
        """The ticket's requester with user fields and organization (what intake lacks from events)."""
        user = self.user(str(self.ticket(ticket_id)["requester_id"]))
        org = None
        if user.organization_id:
            try:
                org = self.organization(user.organization_id)
            except NotFound:
                org = None
        return Requester(user, org)

    def recent_tickets(self, user_id: str, limit: int = 5, exclude: str | None = None) -> list[TicketSummary]:
        """The user's other tickets, most recently updated first."""
        body = self.api.request(
            "GET",
            f"/api/v2/users/{user_id}/tickets/requested",
            params={"sort_by": "updated_at", "sort_order": "desc", "per_page": min(100, limit + 1)},
            what=f"user {user_id}",
        )
        out = [
            TicketSummary(
                id=str(t["id"]),
                subject=str(t.get("subject") or ""),
                status=str(t.get("status") or ""),
                created_at=str(t.get("created_at") or ""),
                updated_at=str(t.get("updated_at") or ""),
                tags=list(t.get("tags") or []),
            )
            for t in body.get("tickets", [])
            if str(t["id"]) != exclude
        ]
        return out[:limit]

    def _comments(self, ticket_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Every comment, oldest first, and the users who wrote them (sideloaded)."""
        tid = self._tid(ticket_id)
        path = f"/api/v2/tickets/{tid}/comments"
        params: dict[str, Any] | None = {"include": "users", "per_page": 100, "sort_order": "asc"}
        comments: list[dict[str, Any]] = []
        users: dict[str, dict[str, Any]] = {}
        for _ in range(MAX_COMMENT_PAGES):
            body = self.api.request("GET", path, params=params, what=f"ticket {tid}")
            comments.extend(body.get("comments") or [])
            users.update({str(u["id"]): u for u in body.get("users") or []})
            following = body.get("next_page")
            if not following:
                break
            if not self.api.same_origin(following):
                raise AdapterError("Zendesk: a pagination link points outside the account")
            path, params = following, None
        return comments, users

    def _author(self, author_id: str, users: Mapping[str, Mapping[str, Any]]) -> str:
        if author_id == self.me().id:
            return AGENT_AUTHOR
        user = users.get(author_id, {})
        if user.get("role") in STAFF_ROLES:
            return f"agent:{user.get('name') or author_id}"
        return str(user.get("email") or f"user:{author_id}")

    def list_comments(self, ticket_id: str) -> list[Comment]:
        """Public replies and internal notes, oldest first; an unknown ticket has none."""
        try:
            comments, users = self._comments(ticket_id)
        except NotFound:
            return []
        return [
            Comment(
                author=self._author(str(c.get("author_id")), users),
                public=bool(c.get("public")),
                body=str(c.get("plain_body") or c.get("body") or ""),
                created_at=str(c.get("created_at") or ""),
            )
            for c in comments
        ]

    def get_state(self, ticket_id: str) -> dict[str, Any]:
        """Status, subject, requester, assignee (our name for it) and tags; empty for an unknown ticket."""
        try:
            t = self.ticket(ticket_id)
        except NotFound:
            return {}
        return {
            "subject": t.get("subject"),
            "status": t.get("status"),
            "requester": str(t.get("requester_id")) if t.get("requester_id") else None,
            "assignee": self._assignee_name(t),
            "group_id": t.get("group_id"),
            "assignee_id": t.get("assignee_id"),
            "tags": list(t.get("tags") or []),
        }

    def _assignee_name(self, t: Mapping[str, Any]) -> str | None:
        for name, uid in self.assignee_ids.items():
            if t.get("assignee_id") == uid:
                return name
        for name, gid in self.group_ids.items():
            if t.get("group_id") == gid:
                return name
        return None

    # --- loop guards -----------------------------------------------------------------------------------

    def is_agent_author(self, user_id: str) -> bool:
        """True for us (the API token's agent) and for staff: their comments never start a session."""
        if user_id == self.me().id:
            return True
        try:
            return self.user(user_id).role in STAFF_ROLES
        except NotFound:
            return False

    def already_answered_by_human(self, ticket_id: str) -> bool:
        """True when a person (staff other than us) has posted a public reply on the ticket.

        The agent step calls it right before it posts (a person may have answered while the model was
        thinking); intake calls it before it starts a session for anything but a new ticket.
        """
        comments, users = self._comments(ticket_id)
        me = self.me().id
        # The first comment is the ticket's description, even when an agent wrote it (a phone call).
        return any(
            c.get("public")
            and str(c.get("author_id")) != me
            and users.get(str(c.get("author_id")), {}).get("role") in STAFF_ROLES
            for c in comments[1:]
        )

    # --- writes ----------------------------------------------------------------------------------------

    def _update_once(self, ticket_id: str, idempotency_key: str, changes: dict[str, Any]) -> bool:
        """Apply `changes` (with its comment) once per key; False when an earlier try already did."""
        tid = self._tid(ticket_id)
        marker = key_tag(idempotency_key)
        tags = [*changes.pop("additional_tags", []), marker]
        attempt = 0
        while True:
            current = self.ticket(tid)
            if marker in (current.get("tags") or []):
                return False
            body = {
                "ticket": {
                    **changes,
                    "additional_tags": tags,
                    "safe_update": True,
                    "updated_stamp": current["updated_at"],
                }
            }
            try:
                self.api.request(
                    "PUT", f"/api/v2/tickets/{tid}", json=body, idempotent=False, what=f"ticket {tid}"
                )
                return True
            except (Conflict, OutcomeUnknown) as exc:
                # Someone (maybe an earlier try of ours) changed the ticket, or we cannot tell whether
                # our update landed: read again; the marker tag decides.
                attempt += 1
                if attempt >= self.api.retry.attempts + 2:
                    raise AdapterError(f"Zendesk: ticket {tid} could not be updated ({exc})") from None
                delay = self.api.retry.backoff(attempt)
                if delay > self.api.remaining() - self.api.retry.margin:
                    raise AdapterError(
                        f"Zendesk: ticket {tid} could not be updated before the deadline"
                    ) from None
                self.api.sleep(delay)

    def respond(self, ticket_id: str, reply: str, note: str, status: str, idempotency_key: str) -> None:
        """The public reply with the status to leave and `ai_answered`, then the internal note.

        Zendesk takes one comment per update, so these are two updates, each once per key.
        """
        if status not in REPLY_STATUSES:
            raise AdapterError(f"Zendesk: cannot leave a ticket {status!r} after a reply")
        self._update_once(
            ticket_id,
            idempotency_key,
            {
                "comment": {"body": reply, "public": True},
                "status": status,
                "additional_tags": [ANSWERED_TAG],
            },
        )
        if note:
            self._update_once(
                ticket_id, f"{idempotency_key}:note", {"comment": {"body": note, "public": False}}
            )

    def add_note(self, ticket_id: str, body: str, idempotency_key: str) -> None:
        """An internal note (escalation summary, the agent's draft): agents see it, the requester does not."""
        self._update_once(ticket_id, idempotency_key, {"comment": {"body": body, "public": False}})

    def _put(self, ticket_id: str, fields: dict[str, Any]) -> None:
        """A field-only update: setting the same values twice is harmless, so it may be retried."""
        tid = self._tid(ticket_id)
        self.api.request(
            "PUT", f"/api/v2/tickets/{tid}", json={"ticket": fields}, idempotent=True, what=f"ticket {tid}"
        )

    def assign(self, ticket_id: str, group: str) -> None:
        """Hand the ticket to people: a mapped agent, a mapped group, or the default group; tag it."""
        fields: dict[str, Any] = {"additional_tags": [ESCALATED_TAG]}
        if group in self.assignee_ids:
            fields["assignee_id"] = self.assignee_ids[group]
        elif group in self.group_ids:
            fields["group_id"] = self.group_ids[group]
            fields["assignee_id"] = None
        elif self.default_group_id is not None:
            fields["group_id"] = self.default_group_id
            fields["assignee_id"] = None
        else:
            raise AdapterError(f"Zendesk: no group or agent is configured for {group!r}")
        self._put(ticket_id, fields)


# --- Help Center -------------------------------------------------------------------------------------------


class _Text(HTMLParser):
    """Article HTML to plain text: block elements become line breaks, scripts and styles vanish."""

    BLOCKS = frozenset({"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"}:
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class ZendeskHelpCenter:
    """`KnowledgeBase` over the Help Center API: live search in one locale, published articles only.

    Search answers in the order Zendesk ranks; it gives no score, so `score` falls with the rank.
    """

    def __init__(
        self,
        base_url: str,
        *,
        locale: str = "en-us",
        email: str | None = None,
        api_token: str | None = None,
        timeout: float = 5.0,
        remaining: Remaining | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        api: JsonApi | None = None,
    ) -> None:
        self.locale = locale.lower()
        self.api = api or _http(
            base_url,
            email,
            api_token,
            timeout=timeout,
            remaining=remaining,
            retry=retry,
            transport=transport,
            sleep=sleep,
        )

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any], **options: Any) -> ZendeskHelpCenter:
        """From the same Secrets Manager JSON as ZendeskTickets (private articles need the agent's token)."""
        base = secret.get("base_url") or zendesk_url(str(secret.get("subdomain", "")))
        email, token = secret.get("email"), secret.get("api_token")
        return cls(
            str(base), email=str(email) if email else None, api_token=str(token) if token else None, **options
        )

    def for_locale(self, locale: str) -> ZendeskHelpCenter:
        """The same help center in another locale (the customer's), sharing the connection."""
        return ZendeskHelpCenter(self.api.base_url, locale=locale, api=self.api)

    def search(self, query: str, limit: int = 3) -> list[Article]:
        if not query.strip():
            return []
        body = self.api.request(
            "GET",
            "/api/v2/help_center/articles/search",
            params={"query": query[:200], "locale": self.locale, "per_page": max(1, min(limit, 25))},
        )
        results = [r for r in body.get("results") or [] if not r.get("draft")][:limit]
        return [
            Article(
                id=str(r["id"]),
                title=str(r.get("title") or ""),
                snippet=html_to_text(str(r.get("snippet") or ""))
                or html_to_text(str(r.get("body") or ""))[:200],
                url=str(r.get("html_url") or ""),
                score=round(1.0 / (rank + 1), 3),
            )
            for rank, r in enumerate(results)
        ]

    def get(self, article_id: str) -> str | None:
        """The article as text with its title as a `# ` heading; None when there is no such article."""
        if not article_id.isdigit():
            return None
        try:
            body = self.api.request(
                "GET",
                f"/api/v2/help_center/{self.locale}/articles/{article_id}",
                what=f"article {article_id}",
            )
        except NotFound:
            return None
        article = body["article"]
        if article.get("draft"):
            return None
        title = html.unescape(str(article.get("title") or ""))
        return f"# {title}\n\n{html_to_text(str(article.get('body') or ''))}"
