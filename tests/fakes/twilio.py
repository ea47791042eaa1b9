"""A local Twilio: the Messages resource of the 2010-04-01 REST API and signed status callbacks.

Speaks Twilio's formats: form-encoded requests with HTTP basic auth (Account SID, auth token); a 201 with the
Message resource JSON; errors as {"code", "message", "more_info", "status"}; status callbacks as form POSTs
signed with X-Twilio-Signature (HMAC-SHA1 of the URL and the sorted parameters, base64, keyed by the token).
The signature here is written independently of tertulia.channels.webhooks so each checks the other.
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.request
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlencode

from fakes import FakeHTTPServer

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    payload = url
    for name in sorted(params):
        payload += name + params[name]
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def error_body(code: int, message: str, status: int) -> dict:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


class _Handler(BaseHTTPRequestHandler):
    fake: "FakeTwilio"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _account(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            sid, _, token = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return sid if self.fake.accounts.get(sid) == token else None

    def do_GET(self) -> None:
        match = re.fullmatch(r"/2010-04-01/Accounts/(AC\w+)\.json", self.path)
        if not match:
            return self._answer(404, error_body(20404, "The requested resource was not found", 404))
        if self._account() != match[1]:
            return self._answer(401, error_body(20003, "Authenticate", 401))
        self._answer(200, {"sid": match[1], "friendly_name": "Tertulia test account", "status": "active",
                           "type": "Full", "uri": f"/2010-04-01/Accounts/{match[1]}.json"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
        match = re.fullmatch(r"/2010-04-01/Accounts/(AC\w+)/Messages\.json", self.path)
        self.fake.requests.append({"path": self.path, "form": form, "headers": dict(self.headers)})
        if not match:
            return self._answer(404, error_body(20404, "The requested resource was not found", 404))
        scripted = self.fake.scripted.pop(0) if self.fake.scripted else None
        if scripted is not None:
            if scripted.get("sleep"):
                time.sleep(scripted["sleep"])
            if scripted.get("status"):
                return self._answer(scripted["status"], scripted["body"], scripted.get("headers"))
        sid = self._account()
        if sid != match[1]:
            return self._answer(401, error_body(20003, "Authenticate", 401))
        to = form.get("To", "")
        if not _E164.match(to):
            return self._answer(400, error_body(21211, f"The 'To' number {to} is not a valid phone number.", 400))
        if not form.get("Body"):
            return self._answer(400, error_body(21602, "Message body is required.", 400))
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return self._answer(400, error_body(21603, "A 'From' phone number is required.", 400))
        message_sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        message = {
            "account_sid": sid, "api_version": "2010-04-01", "body": form["Body"], "date_created": now,
            "date_sent": None, "date_updated": now, "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD", "sid": message_sid,
            "status": "accepted" if form.get("MessagingServiceSid") else "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}/Media.json"},
            "to": to, "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
        }
        self.fake.messages[message_sid] = {**message, "status_callback": form.get("StatusCallback", "")}
        self._answer(201, message)


class FakeTwilio(FakeHTTPServer):
    handler_class = _Handler

    def __init__(self, accounts: dict[str, str]) -> None:
        super().__init__()
        self.accounts = dict(accounts)  # Account SID -> auth token
        self.requests: list[dict] = []
        self.messages: dict[str, dict] = {}
        self.scripted: list[dict] = []
        self.lock = threading.Lock()

    def fail_next(self, status: int, code: int, message: str, headers: dict | None = None) -> None:
        self.scripted.append({"status": status, "body": error_body(code, message, status), "headers": headers})

    def answer_next(self, status: int, body: dict) -> None:
        self.scripted.append({"status": status, "body": body})

    def stall_next(self, seconds: float) -> None:
        """The next request waits this long before being handled normally (for client timeouts)."""
        self.scripted.append({"sleep": seconds})

    def callback(self, message_sid: str, status: str, *, error_code: str = "", url: str = "") -> tuple[str, dict, str]:
        """The status callback Twilio would send now: (url, form parameters, X-Twilio-Signature)."""
        message = self.messages[message_sid]
        params = {"AccountSid": message["account_sid"], "ApiVersion": "2010-04-01", "From": message["from"] or "",
                  "MessageSid": message_sid, "MessageStatus": status, "SmsSid": message_sid, "SmsStatus": status,
                  "To": message["to"]}
        if error_code:
            params["ErrorCode"] = error_code
        url = url or message["status_callback"]
        return url, params, sign(self.accounts[message["account_sid"]], url, params)

    def send_callback(self, message_sid: str, status: str, *, error_code: str = "") -> int:
        """POST the status callback over HTTP as Twilio does; the answer's HTTP status."""
        url, params, signature = self.callback(message_sid, status, error_code=error_code)
        request = urllib.request.Request(url, data=urlencode(params).encode(), method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature,
            "User-Agent": "TwilioProxy/1.1"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a local test URL
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
