"""The registry of listening connectors: one module per network, each with `SPEC` and `build(config)`.

`TERTULIA_LISTENING_CONNECTORS` ({network: dotted module path}) replaces a network's module (tests, a
store's own connector). A module may also define `validate(settings, secrets) -> list[ErrorDetail]` for
checks beyond names and types.
"""

from dataclasses import dataclass, field
from importlib import import_module
from types import ModuleType
from typing import Any

from django.conf import settings as django_settings

from tertulia.listening.connectors.base import (
    AuthFailed,
    Connector,
    ConnectorError,
    Post,
    RateLimited,
    Session,
    SourceSpec,
    html_to_text,
)

__all__ = ["AuthFailed", "Connector", "ConnectorError", "MODULES", "Post", "RateLimited", "Session",
           "SourceConfig", "SourceSpec", "connector_build", "connector_module", "html_to_text", "spec_for"]

MODULES: dict[str, str] = {
    "mastodon": "tertulia.listening.connectors.mastodon",
    "bluesky": "tertulia.listening.connectors.bluesky",
    "x": "tertulia.listening.connectors.x",
    "rss": "tertulia.listening.connectors.rss",
    "webhook": "tertulia.listening.connectors.webhook",
    "email": "tertulia.listening.connectors.email",
}


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """What a connector is built from: the source's settings and its decrypted secrets."""

    source_id: int
    store_id: int
    network: str
    key: str
    settings: dict[str, Any]
    secrets: dict[str, Any] = field(repr=False)


def connector_module(network: str) -> ModuleType:
    overrides = getattr(django_settings, "TERTULIA_LISTENING_CONNECTORS", None) or {}
    path = overrides.get(network) or MODULES.get(network)
    if path is None:
        raise LookupError(f"No listening connector for network '{network}'.")
    return import_module(path)


def spec_for(network: str) -> SourceSpec:
    return connector_module(network).SPEC


def connector_build(config: SourceConfig) -> Connector:
    return connector_module(config.network).build(config)
