"""A Zendesk stand-in on 127.0.0.1: the Support API v2 and Help Center endpoints the adapter uses.

It answers in Zendesk's documented shapes: `{"ticket": {...}}`, `{"comments": [...], "users": [...],
"next_page": ..., "previous_page": ..., "count": n}` with offset pagination (`page`, `per_page` up to
100), `{"error": "RecordNotFound", "description": "Not found"}` with 404, 401 `Couldn't authenticate you`
without a valid `email/token` basic auth, 409 `UpdateConflict` for a `safe_update` with a stale
`updated_stamp`, 422 `RecordInvalid` for a closed ticket or a bad status, and 429 with `Retry-After` past
the per-ticket update limit (30 updates in 10 minutes) or when a test asks for it. State is in memory;
the helpers (`create_user`, `create_ticket`, `reply_as`, `comments`, ...) let tests arrange and inspect it.

One simplification: `updated_at` keeps Zendesk's second precision but every change moves it forward by
at least a second, so `safe_update` always sees a change (Zendesk can miss two in the same second).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
UPDATES_PER_TICKET = 30
UPDATE_WINDOW = 600.0
LOCAL_TOKEN = "local-zendesk-token"


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _not_found() -> ApiError:
    return ApiError(404, {"error": "RecordNotFound", "description": "Not found"})


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {field: [{"description": message}]},
        },
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeZendesk:
    def __init__(self, email: str = "bot@acme.example", token: str = LOCAL_TOKEN) -> None:
        self.email = email
        self.token = token
        self.users: dict[int, dict[str, Any]] = {}
        self.organizations: dict[int, dict[str, Any]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.ticket_comments: dict[int, list[dict[str, Any]]] = {}
        self.articles: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        # Fault injection for tests: statuses answered before handling the next requests (429 and 503
        # carry Retry-After: retry_after), PUTs applied but answered by a dropped connection, and a hook
        # run inside the next PUT before it is checked (a person acting at the same moment).
        self.fail_next: list[int] = []
        self.fail_puts: list[int] = []  # the same, for ticket updates only (not applied)
        self.retry_after = "0"
        self.updates_per_ticket = UPDATES_PER_TICKET
        self.drop_after_apply = 0
        self.before_update: Callable[[int], None] | None = None
        self._ids = itertools.count(1)
        self._updates: dict[int, list[float]] = {}
        self._lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval makes stop() quick (shutdown waits for the loop to look).
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.agent_id = self.create_user("Support Agent (API)", email, role="agent")

    # --- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeZendesk:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeZendesk:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- helpers for tests -----------------------------------------------------------------------------

    def _now(self) -> str:
        return _iso(time.time())

    def _touch(self, ticket: dict[str, Any]) -> None:
        previous = datetime.strptime(ticket["updated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        ticket["updated_at"] = _iso(max(time.time(), previous.timestamp() + 1))

    def create_organization(self, name: str, **fields: Any) -> str:
        with self._lock:
            oid = next(self._ids) + 360000
            now = self._now()
            self.organizations[oid] = {
                "id": oid,
                "url": f"{self.url}/api/v2/organizations/{oid}.json",
                "name": name,
                "domain_names": fields.get("domain_names", []),
                "tags": fields.get("tags", []),
                "organization_fields": fields.get("organization_fields", {}),
                "details": fields.get("details", ""),
                "notes": fields.get("notes", ""),
                "created_at": now,
                "updated_at": now,
            }
            return str(oid)

    def create_user(
        self,
        name: str,
        email: str | None = None,
        *,
        role: str = "end-user",
        external_id: str | None = None,
        organization_id: str | None = None,
        user_fields: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> str:
        with self._lock:
            uid = next(self._ids) + 377000
            now = self._now()
            self.users[uid] = {
                "id": uid,
                "url": f"{self.url}/api/v2/users/{uid}.json",
                "name": name,
                "email": email,
                "role": role,
                "external_id": external_id,
                "organization_id": int(organization_id) if organization_id else None,
                "user_fields": user_fields or {},
                "tags": [],
                "locale": locale,
                "time_zone": "UTC",
                "active": True,
                "verified": email is not None,
                "created_at": now,
                "updated_at": now,
            }
            return str(uid)

    def create_ticket(
        self,
        subject: str,
        description: str,
        requester_id: str,
        *,
        tags: list[str] | None = None,
        status: str = "new",
        channel: str = "email",
        submitter_id: str | None = None,
    ) -> str:
        """A ticket as the requester (or `submitter_id`, an agent taking a call) opened it."""
        with self._lock:
            tid = max([*self.tickets, 0]) + 1
            now = self._now()
            requester = int(requester_id)
            submitter = int(submitter_id) if submitter_id else requester
            self.tickets[tid] = {
                "id": tid,
                "url": f"{self.url}/api/v2/tickets/{tid}.json",
                "external_id": None,
                "via": {"channel": channel},
                "created_at": now,
                "updated_at": now,
                "type": None,
                "subject": subject,
                "raw_subject": subject,
                "description": description,
                "priority": None,
                "status": status,
                "requester_id": requester,
                "submitter_id": submitter,
                "assignee_id": None,
                "organization_id": self.users[requester]["organization_id"],
                "group_id": None,
                "tags": sorted(set(tags or [])),
                "custom_fields": [],
                "is_public": True,
            }
            self.ticket_comments[tid] = []
            self._add_comment(tid, submitter, description, True)
            return str(tid)

    def _add_comment(self, tid: int, author: int, body: str, public: bool) -> dict[str, Any]:
        comment = {
            "id": next(self._ids) + 900000,
            "type": "Comment",
            "author_id": author,
            "body": body,
            "html_body": '<div class="zd-comment"><p>' + body.replace("\n", "<br>") + "</p></div>",
            "plain_body": body,
            "public": public,
            "attachments": [],
            "audit_id": next(self._ids) + 800000,
            "via": {"channel": "api" if author == int(self.agent_id) else "web"},
            "created_at": self._now(),
        }
        self.ticket_comments[tid].append(comment)
        return comment

    def reply_as(self, ticket_id: str, user_id: str, body: str, public: bool = True) -> None:
        """A person (an agent in the Zendesk UI, or the requester) adds a comment."""
        with self._lock:
            tid = int(ticket_id)
            self._add_comment(tid, int(user_id), body, public)
            self._touch(self.tickets[tid])

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        with self._lock:
            return deepcopy(self.tickets[int(ticket_id)])

    def comments(self, ticket_id: str, public: bool | None = None) -> list[dict[str, Any]]:
        with self._lock:
            found = deepcopy(self.ticket_comments[int(ticket_id)])
        return [c for c in found if public is None or c["public"] is public]

    def add_article(self, title: str, body_html: str, *, locale: str = "en-us", draft: bool = False) -> str:
        with self._lock:
            aid = next(self._ids) + 115000
            self.articles[aid] = {
                "id": aid,
                "url": f"{self.url}/api/v2/help_center/{locale}/articles/{aid}.json",
                "html_url": f"https://acme.zendesk.com/hc/{locale}/articles/{aid}",
                "title": title,
                "body": body_html,
                "locale": locale,
                "source_locale": locale,
                "draft": draft,
                "section_id": 1,
                "label_names": [],
                "created_at": self._now(),
                "updated_at": self._now(),
            }
            return str(aid)

    # --- the API ---------------------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == f"{self.email}/token" and secret == self.token

    def _page(self, path: str, query: dict[str, str], key: str, items: list[Any]) -> dict[str, Any]:
        try:
            per_page = max(1, min(100, int(query.get("per_page", "100"))))
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            raise ApiError(400, {"error": "InvalidPaginationParameter"}) from None
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(n: int) -> str:
            return f"{self.url}{path}.json?" + urlencode({**query, "page": n, "per_page": per_page})

        return {
            key: chunk,
            "next_page": link(page + 1) if page * per_page < len(items) else None,
            "previous_page": link(page - 1) if page > 1 else None,
            "count": len(items),
        }

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        path = path.removesuffix(".json")
        parts = path.strip("/").split("/")
        with self._lock:
            if parts[:2] != ["api", "v2"]:
                raise ApiError(404, {"error": "InvalidEndpoint", "description": "Not found"})
            rest = parts[2:]
            if method == "GET" and rest == ["users", "me"]:
                return 200, {"user": deepcopy(self.users[int(self.agent_id)])}
            if method == "GET" and len(rest) == 2 and rest[0] == "users":
                return 200, {"user": deepcopy(self._get(self.users, rest[1]))}
            if method == "GET" and rest[:1] == ["users"] and rest[2:] == ["tickets", "requested"]:
                uid = int(self._get(self.users, rest[1])["id"])
                mine = [t for t in self.tickets.values() if t["requester_id"] == uid]
                field = query.get("sort_by", "created_at")
                if field not in {"created_at", "updated_at", "id", "status"}:
                    field = "created_at"
                mine.sort(key=lambda t: (t[field], t["id"]), reverse=query.get("sort_order") == "desc")
                return 200, self._page(path, query, "tickets", deepcopy(mine))
            if method == "GET" and len(rest) == 2 and rest[0] == "organizations":
                return 200, {"organization": deepcopy(self._get(self.organizations, rest[1]))}
            if rest[:1] == ["tickets"] and len(rest) == 2:
                ticket = self._get(self.tickets, rest[1])
                if method == "GET":
                    return 200, {"ticket": deepcopy(ticket)}
                if method == "PUT":
                    return 200, self._update(ticket, body)
            if method == "GET" and rest[:1] == ["tickets"] and rest[2:] == ["comments"]:
                ticket = self._get(self.tickets, rest[1])
                comments = deepcopy(self.ticket_comments[ticket["id"]])
                if query.get("sort_order") == "desc":
                    comments.reverse()
                page = self._page(path, query, "comments", comments)
                if "users" in query.get("include", "").split(","):
                    authors = {c["author_id"] for c in page["comments"]}
                    page["users"] = [deepcopy(self.users[a]) for a in sorted(authors) if a in self.users]
                return 200, page
            if method == "GET" and rest == ["help_center", "articles", "search"]:
                return 200, self._search(path, query)
            if method == "GET" and len(rest) == 4 and rest[0] == "help_center" and rest[2] == "articles":
                article = self._get(self.articles, rest[3])
                if article["locale"] != rest[1].lower():
                    raise _not_found()
                return 200, {"article": deepcopy(article)}
        raise ApiError(404, {"error": "InvalidEndpoint", "description": "Not found"})

    def _get(self, table: dict[int, dict[str, Any]], raw_id: str) -> dict[str, Any]:
        if not raw_id.isdigit() or int(raw_id) not in table:
            raise _not_found()
        return table[int(raw_id)]

    def _update(self, ticket: dict[str, Any], body: Any) -> dict[str, Any]:
        changes = body.get("ticket") if isinstance(body, dict) else None
        if not isinstance(changes, dict):
            raise ApiError(400, {"error": "InvalidParameter", "description": "ticket is required"})
        tid = ticket["id"]
        recent = [t for t in self._updates.get(tid, []) if time.time() - t < UPDATE_WINDOW]
        if len(recent) >= self.updates_per_ticket:
            wait = int(UPDATE_WINDOW - (time.time() - recent[0])) + 1
            raise ApiError(429, {"error": "TooManyRequests"}, {"Retry-After": str(wait)})
        if self.before_update is not None:
            hook, self.before_update = self.before_update, None
            hook(tid)
        if changes.get("safe_update") and changes.get("updated_stamp") != ticket["updated_at"]:
            raise ApiError(
                409,
                {
                    "error": "UpdateConflict",
                    "description": "Safe Update prevented the update due to outdated ticket data.",
                },
            )
        if ticket["status"] == "closed":
            raise _invalid("status", "Status: closed prevents ticket update")
        status = changes.get("status")
        if status is not None and status not in STATUSES:
            raise _invalid("status", f"Status: {status} is not valid")
        comment = changes.get("comment")
        if comment is not None and not str(comment.get("body") or comment.get("html_body") or "").strip():
            raise _invalid("comment", "Comment: body cannot be blank")
        for field in ("group_id", "assignee_id"):
            value = changes.get(field)
            if value is not None and (field == "assignee_id" and int(value) not in self.users):
                raise _invalid(field, f"{field} is invalid")
        # Every check passed: the update applies whole.
        self._updates[tid] = [*recent, time.time()]
        if comment is not None:
            author = int(comment.get("author_id") or self.agent_id)
            self._add_comment(tid, author, str(comment.get("body") or ""), bool(comment.get("public", True)))
        if status is not None:
            ticket["status"] = status
        elif ticket["status"] == "new":
            ticket["status"] = "open"
        for field in ("group_id", "assignee_id", "subject", "priority"):
            if field in changes:
                ticket[field] = changes[field]
        tags = set(changes["tags"]) if "tags" in changes else set(ticket["tags"])
        tags |= set(changes.get("additional_tags") or [])
        tags -= set(changes.get("remove_tags") or [])
        ticket["tags"] = sorted(t.lower() for t in tags)
        self._touch(ticket)
        return {"ticket": deepcopy(ticket), "audit": {"ticket_id": tid, "created_at": ticket["updated_at"]}}

    def _search(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        words = [w for w in re.findall(r"\w+", query.get("query", "").lower()) if len(w) > 2]
        if not words:
            raise ApiError(400, {"error": "InvalidSearchQuery", "description": "query is required"})
        locale = query.get("locale", "en-us").lower()
        scored = []
        for a in self.articles.values():
            if a["draft"] or (locale != "*" and a["locale"] != locale):
                continue
            plain = a["title"] + " " + re.sub(r"<[^>]+>", " ", a["body"])
            text = plain.lower()
            score = sum(text.count(w) for w in words) + 3 * sum(a["title"].lower().count(w) for w in words)
            if score:
                first = next(w for w in words if w in text)
                at = text.find(first)
                snippet = plain[max(0, at - 60) : at].strip() + f" <em>{plain[at : at + len(first)]}</em>"
                snippet += plain[at + len(first) : at + 100]
                scored.append((score, {**deepcopy(a), "snippet": snippet}))
        scored.sort(key=lambda s: -s[0])
        return self._page(path, query, "results", [a for _, a in scored])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake.requests.append((method, url.path))
                    injected = fake.fail_next.pop(0) if fake.fail_next else None
                    if injected is None and method == "PUT" and fake.fail_puts:
                        injected = fake.fail_puts.pop(0)
                if injected is not None:
                    headers = {"Retry-After": fake.retry_after} if injected in {429, 503} else {}
                    self._answer(injected, {"error": "Injected", "description": f"HTTP {injected}"}, headers)
                    return
                # Published Help Center content is readable without signing in; the rest needs the token.
                public = method == "GET" and url.path.startswith("/api/v2/help_center/")
                if not public and not fake.authorized(self.headers.get("Authorization")):
                    self._answer(401, {"error": "Couldn't authenticate you"})
                    return
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._answer(400, {"error": "InvalidJSON", "description": "The body is not JSON"})
                    return
                try:
                    status, answer = fake.handle(method, url.path, query, body)
                except ApiError as exc:
                    self._answer(exc.status, exc.body, exc.headers)
                    return
                if method == "PUT" and fake.drop_after_apply > 0:
                    fake.drop_after_apply -= 1
                    self.close_connection = True
                    self.connection.close()  # applied, but the caller never hears
                    return
                self._answer(status, answer)

            def _answer(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, *args: Any) -> None:
                return

        return Handler
