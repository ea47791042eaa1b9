"""A local Mastodon instance: just enough of the REST API for direct messages, in Mastodon's own JSON.

Answers GET /api/v1/instance and /api/v2/instance, GET /api/v1/accounts/verify_credentials,
POST /api/v1/statuses (form-encoded, Bearer token, Idempotency-Key honoured) and DELETE /api/v1/statuses/:id
with Status entities built from a real recorded one (tests/fixtures/social/mastodon/status.json), sends the
X-RateLimit-* headers Mastodon sends, and answers errors as Mastodon does: {"error": "..."} with 401, 404,
422, 429 or 5xx. Mentions are resolved against the accounts the test declares, as a server resolves handles.
"""

import copy
import json
import re
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qsl

from fakes import FakeHTTPServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "social" / "mastodon"
STATUS_TEMPLATE = json.loads((FIXTURES / "status.json").read_text())
INSTANCE_V2 = json.loads((FIXTURES / "instance_v2.json").read_text())
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]+)(?:@([A-Za-z0-9.-]+\.[A-Za-z]{2,}|localhost(?::\d+)?))?")


class _Handler(BaseHTTPRequestHandler):
    fake: "FakeMastodon"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        fake = self.fake
        reset = datetime.fromtimestamp(time.time() + 300, UTC).isoformat().replace("+00:00", "Z")
        for name, value in {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": str(fake.remaining),
                            "X-RateLimit-Reset": reset, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.fake.token}"

    def _scripted(self) -> bool:
        if not self.fake.scripted:
            return False
        status, body, headers = self.fake.scripted.pop(0)
        self._answer(status, body, headers)
        return True

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/api/v1/instance":
            return self._answer(200, self.fake.instance_v1())
        if path == "/api/v2/instance":
            return self._answer(200, {**INSTANCE_V2, "domain": self.fake.domain})
        if path == "/api/v1/accounts/verify_credentials":
            if not self._authorized():
                return self._answer(401, {"error": "The access token is invalid"})
            return self._answer(200, self.fake.me())
        self._answer(404, {"error": "Record not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
        self.fake.requests.append({"method": "POST", "path": self.path, "form": form, "headers": dict(self.headers)})
        if self.path.rstrip("/") != "/api/v1/statuses":
            return self._answer(404, {"error": "Record not found"})
        if self._scripted():
            return
        if not self._authorized():
            return self._answer(401, {"error": "The access token is invalid"})
        key = self.headers.get("Idempotency-Key")
        with self.fake.lock:
            if key and key in self.fake.idempotency:
                return self._answer(200, self.fake.statuses[self.fake.idempotency[key]])
            text = form.get("status", "")
            if not text.strip():
                return self._answer(422, {"error": "Validation failed: Text can't be blank"})
            if len(text) > 500:
                return self._answer(422, {"error": "Validation failed: Text character limit of 500 exceeded"})
            status = self.fake.status_create(text=text, visibility=form.get("visibility", "public"),
                                             language=form.get("language"), in_reply_to_id=form.get("in_reply_to_id"))
            if key:
                self.fake.idempotency[key] = status["id"]
        self._answer(200, status)

    def do_DELETE(self) -> None:
        self.fake.requests.append({"method": "DELETE", "path": self.path, "form": {}, "headers": dict(self.headers)})
        match = re.fullmatch(r"/api/v1/statuses/(\d+)", self.path)
        if not self._authorized():
            return self._answer(401, {"error": "The access token is invalid"})
        with self.fake.lock:
            status = self.fake.statuses.pop(match[1], None) if match else None
        if status is None:
            return self._answer(404, {"error": "Record not found"})
        self.fake.deleted.append(status["id"])
        self._answer(200, {**status, "text": status["content"]})


class FakeMastodon(FakeHTTPServer):
    handler_class = _Handler

    def __init__(self, *, token: str, known_accounts: list[str] = (), domain: str = "") -> None:
        super().__init__()
        self.token = token
        self.domain = domain or f"127.0.0.1:{self.server.server_address[1]}"
        self.known = {acct.lower().lstrip("@") for acct in known_accounts}
        self.statuses: dict[str, dict] = {}
        self.deleted: list[str] = []
        self.idempotency: dict[str, str] = {}
        self.requests: list[dict] = []
        self.scripted: list[tuple[int, dict, dict | None]] = []
        self.remaining = 299
        self.lock = threading.Lock()
        self._next_id = 117020583223442465

    def fail_next(self, status: int, error: str, headers: dict | None = None) -> None:
        self.scripted.append((status, {"error": error}, headers))

    def me(self) -> dict:
        account = copy.deepcopy(STATUS_TEMPLATE["account"])
        account["url"] = f"{self.base_url}/@{account['username']}"
        return account

    def instance_v1(self) -> dict:
        return {"uri": self.domain, "title": INSTANCE_V2.get("title", "Mastodon"), "short_description": "",
                "description": "", "email": "", "version": INSTANCE_V2["version"], "urls": {},
                "stats": {"user_count": 1, "status_count": len(self.statuses), "domain_count": 1},
                "languages": INSTANCE_V2.get("languages", []), "registrations": False, "approval_required": False}

    def _mention(self, user: str, domain: str | None) -> dict | None:
        acct = f"{user}@{domain}" if domain and domain != self.domain else user
        if acct.lower() not in self.known:
            return None
        return {"id": str(abs(hash(acct)) % 10**17), "username": user, "acct": acct,
                "url": f"https://{domain or self.domain}/@{user}"}

    def status_create(self, *, text: str, visibility: str, language: str | None, in_reply_to_id: str | None) -> dict:
        self._next_id += 1
        status_id = str(self._next_id)
        status = copy.deepcopy(STATUS_TEMPLATE)
        mentions = [m for m in (self._mention(u, d) for u, d in _MENTION.findall(text)) if m]
        status.update({
            "id": status_id, "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "visibility": visibility, "language": language or "es", "sensitive": False,
            "in_reply_to_id": in_reply_to_id or None, "mentions": mentions,
            "content": "<p>" + text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</p>",
            "uri": f"{self.base_url}/users/{status['account']['username']}/statuses/{status_id}",
            "url": f"{self.base_url}/@{status['account']['username']}/{status_id}",
        })
        self.statuses[status_id] = status
        return status
