"""A scripted listening connector for the runner's tests: each session takes the next step of SCRIPT.

A step is a callable taking the session (emit posts, raise an error, wait...). Registered with
TERTULIA_LISTENING_CONNECTORS = {"mastodon": "listening_fake_connector"} so sources of that network use it.
"""

from collections import deque

from tertulia.listening.connectors.base import SourceSpec

SPEC = SourceSpec(settings={"poll_seconds": (int, float), "tag": str}, secrets=frozenset({"token"}),
                  rate_limit=5, rate_window=300, poll_seconds=60)
SCRIPT: deque = deque()
SESSIONS: list = []


class Scripted:
    network = "mastodon"

    def __init__(self, config) -> None:
        self.config = config

    def run(self, session) -> None:
        SESSIONS.append({"cursor": dict(session.cursor), "secrets": dict(session.secrets)})
        if SCRIPT:
            SCRIPT.popleft()(session)


def build(config):
    return Scripted(config)
