"""Test doubles for the dispatcher tests: an adapter that records what it was asked to send.

Configured per test with TERTULIA_CHANNEL_ADAPTERS = {"email": "dispatch_doubles.RecordingAdapter", ...}.
State is kept on the class because the registry builds (and caches) the instances.
"""

import threading

from tertulia.channels.base import OutboundMessage, SendResult

PROVIDER = "recorder"


class RecordingAdapter:
    provider = PROVIDER
    sent: list[OutboundMessage] = []
    # to-address -> what the next sends to it do: an exception instance to raise, or "ok".
    plan: dict[str, list] = {}
    # Called with each message before it is accepted (property tests check the world at send time).
    on_send = None
    lock = threading.Lock()

    def __init__(self, *, store_id=None, channel="", **_):
        self.store_id = store_id
        self.channel = channel

    @classmethod
    def reset(cls) -> None:
        cls.sent = []
        cls.plan = {}
        cls.on_send = None

    def send(self, message: OutboundMessage) -> SendResult:
        with self.lock:
            steps = self.plan.get(message.to)
            step = steps.pop(0) if steps else "ok"
        if isinstance(step, BaseException):
            raise step
        if self.on_send is not None:
            type(self).on_send(message)
        with self.lock:
            self.sent.append(message)
        return SendResult(provider=PROVIDER, provider_message_id=f"rec-{message.delivery_id}",
                          provider_status="accepted", response={"status": 250, "id": message.delivery_id})
