"""An adapter that accepts every message at once and sends nothing: for the benchmark and for load tests.

Turn it on per channel with TERTULIA_CHANNEL_ADAPTERS = {"email": "tertulia.channels.adapters.null.NullAdapter"}.
"""

from tertulia.channels.base import OutboundMessage, SendResult

PROVIDER = "null"


class NullAdapter:
    provider = PROVIDER

    def __init__(self, *, store_id: int | None = None, channel: str = "", **_: object) -> None:
        self.store_id = store_id
        self.channel = channel

    def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(provider=PROVIDER, provider_message_id=f"null-{message.delivery_id}", provider_status="accepted")
