"""The local Mastodon the channel tests talk to: the listening sandbox, under the name those tests know.

`tertulia.listening.sandbox.mastodon.MastodonSandbox` speaks the REST and streaming API (statuses, timelines,
search, notifications, Idempotency-Key, X-RateLimit-* headers, Mastodon's error bodies) with entities built
from real recorded ones; the direct-message tests need only its POST and DELETE /api/v1/statuses, its
instance documents and verify_credentials, and resolve mentions against `known_accounts`.
"""

from tertulia.listening.sandbox.mastodon import MastodonSandbox as FakeMastodon

__all__ = ["FakeMastodon"]
