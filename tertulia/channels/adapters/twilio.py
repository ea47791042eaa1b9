"""SMS through Twilio's Messages REST API (2010-04-01), with `requests`.

POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP basic auth (Account SID and auth
token), form fields To, From or MessagingServiceSid, Body and StatusCallback. A 201 answers the Message
resource (sid, status, error_code, error_message); an error answers {code, message, more_info, status}.
429, 5xx, timeouts and connection errors are transient; other 4xx (21211 invalid To, 21610 unsubscribed,
20003 bad credentials...) are permanent. The base URL is configurable so tests run a local fake.
"""

import threading
from typing import Any

import requests

from tertulia.channels.base import OutboundMessage, PermanentSendError, SendResult, TransientSendError

PROVIDER = "twilio"
DEFAULT_BASE_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 15.0


def status_callback_path(store_slug: str) -> str:
    return f"/webhooks/twilio/{store_slug}/status"


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"text": response.text[:2000]}
    return data if isinstance(data, dict) else {"body": data}


class TwilioSmsAdapter:
    provider = PROVIDER

    def __init__(self, *, account_sid: str, auth_token: str, from_number: str = "", messaging_service_sid: str = "",
                 base_url: str = DEFAULT_BASE_URL, status_callback_url: str = "", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.base_url = base_url.rstrip("/")
        self.status_callback_url = status_callback_url
        self.timeout = timeout
        self._local = threading.local()  # a requests.Session per thread: keep-alive without sharing one

    def __repr__(self) -> str:
        return f"TwilioSmsAdapter({self.base_url}, {self.account_sid})"

    @classmethod
    def from_account(cls, account) -> "TwilioSmsAdapter":
        from django.conf import settings

        config = account.settings
        public = config.get("status_callback_base_url") or getattr(settings, "TERTULIA_PUBLIC_URL", "")
        callback = public.rstrip("/") + status_callback_path(account.store_slug) if public else ""
        return cls(account_sid=config["account_sid"], auth_token=account.secrets["auth_token"],
                   from_number=config.get("from_number", ""), messaging_service_sid=config.get("messaging_service_sid", ""),
                   base_url=config.get("base_url") or DEFAULT_BASE_URL, status_callback_url=callback,
                   timeout=float(config.get("timeout", DEFAULT_TIMEOUT)))

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            self._local.session = session
        return session

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            return self._session().request(method, url, timeout=(CONNECT_TIMEOUT, self.timeout), **kwargs)
        except requests.ConnectTimeout as exc:
            raise TransientSendError(f"Twilio connect timeout: {exc}", provider=PROVIDER, code="timeout",
                                     response={"error": repr(exc), "maybe_sent": False}) from None
        except requests.Timeout as exc:
            # The request left; Twilio may have queued the SMS. Retrying may send it twice (at least once).
            raise TransientSendError(f"Twilio read timeout: {exc}", provider=PROVIDER, code="timeout",
                                     response={"error": repr(exc), "maybe_sent": True}) from None
        except requests.RequestException as exc:
            raise TransientSendError(f"Twilio connection error: {exc}", provider=PROVIDER, code="connection_error",
                                     response={"error": repr(exc)}) from None

    def send(self, message: OutboundMessage) -> SendResult:
        form = {"To": message.to, "Body": message.text}
        sender = message.from_address or self.from_number
        if self.messaging_service_sid and not message.from_address:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = sender
        callback = message.status_callback_url or self.status_callback_url
        if callback:
            form["StatusCallback"] = callback
        response = self._request("POST", self.messages_url, data=form)
        body = _body(response)
        answer = {"http_status": response.status_code, **body}
        if response.status_code in (200, 201):
            if not body.get("sid"):
                # Accepted but unreadable: do not retry (it may be queued); keep what came back.
                return SendResult(provider=PROVIDER, provider_status="unknown", response=answer)
            if body.get("status") == "failed":
                raise PermanentSendError(f"Twilio failed the message: {body.get('error_code')} {body.get('error_message')}",
                                         provider=PROVIDER, response=answer, code="provider_rejected")
            return SendResult(provider=PROVIDER, provider_message_id=str(body["sid"]),
                              provider_status=str(body.get("status") or ""), response=answer)
        raise self._error(response.status_code, body, answer)

    @staticmethod
    def _error(status: int, body: dict[str, Any], answer: dict[str, Any]) -> Exception:
        code, text = body.get("code"), body.get("message") or body.get("text") or ""
        description = f"Twilio {status}" + (f" error {code}" if code else "") + (f": {text}" if text else "")
        if status == 429 or status >= 500 or status == 408:
            return TransientSendError(description, provider=PROVIDER, response=answer,
                                      code="rate_limited" if status == 429 else "provider_unavailable")
        kind = "auth_failed" if status in (401, 403) or code == 20003 else "provider_rejected"
        return PermanentSendError(description, provider=PROVIDER, response=answer, code=kind)

    def check(self) -> dict[str, Any]:
        """Fetch the account resource: proves the base URL, the SID and the token."""
        url = f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}.json"
        response = self._request("GET", url)
        body = _body(response)
        if response.status_code != 200:
            raise self._error(response.status_code, body, {"http_status": response.status_code, **body})
        return {"provider": PROVIDER, "account_sid": body.get("sid"), "status": body.get("status"),
                "friendly_name": body.get("friendly_name")}
