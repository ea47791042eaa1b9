"""Replies go out through the account that heard the post: the channels registry asks here for a source's adapter.

An inbox reply is a channels.Delivery with `sender="source:<id>"` on the network's channel (mastodon,
bluesky, x). The source's connector module builds the channel adapter from the source's own settings and
secrets (`reply_adapter(config)`); the adapter itself lives in channels/adapters/, beside the other
vendors' glue. A source of a network that cannot answer (RSS) has no `reply_adapter`.
"""

from typing import Any

from tertulia.channels.base import ChannelAdapter, PermanentSendError
from tertulia.channels.credentials import CredentialsError
from tertulia.listening.connectors import connector_module
from tertulia.listening.models import Source
from tertulia.listening.sources import source_config

REPLY_NETWORKS = ("mastodon", "bluesky", "x")


def sender_for(source: Source) -> str:
    """How a delivery names the source whose account sends it (channels.registry resolves it here)."""
    return f"source:{source.pk}"


def _source_id(sender: str) -> int:
    kind, _sep, number = sender.partition(":")
    if kind != "source" or not number.isdigit():
        raise PermanentSendError(f"Unknown sender '{sender}'.", code="channel_misconfigured")
    return int(number)


def sender_version(*, store_id: int, sender: str) -> Any:
    """What changes when the sending account changes (the registry rebuilds its cached adapter then)."""
    return Source.objects.for_store(store_id).filter(pk=_source_id(sender)).values_list("updated_at", flat=True).first()


def reply_adapter(*, store_id: int, channel: str, sender: str) -> ChannelAdapter:
    source = Source.objects.for_store(store_id).filter(pk=_source_id(sender)).first()
    if source is None:
        raise PermanentSendError("The account this conversation came through was deleted.", code="channel_not_configured")
    if source.network != channel:
        raise PermanentSendError(f"Source '{source.key}' is on {source.network}, not {channel}.",
                                 code="channel_misconfigured")
    module = connector_module(source.network)
    build = getattr(module, "reply_adapter", None)
    if build is None:
        raise PermanentSendError(f"Replies cannot be sent on {source.network}.", code="channel_not_supported")
    try:
        config = source_config(source)
    except CredentialsError as exc:
        raise PermanentSendError(str(exc), code="channel_misconfigured") from None
    return build(config)

