"""Local stand-ins for the platforms listening talks to, each speaking its platform's real wire format.

Not for production: `tertulia demo` runs them so a newcomer sees mentions arrive and replies go out with no
account anywhere, and the tests run the connectors against them (replaying real captured payloads). One
module per platform (mastodon, bluesky, x, feeds, mail); each is built from the platform's public
documentation and from captured payloads, and keeps what the store sent (`posted`) for anyone to look at.
"""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class SandboxHTTPServer:
    """A threaded http.server on `host` and `port` (0: a free one); subclasses give the handler class.

    The handler class gets the server object as `sandbox`. Use as a context manager, or start()/stop().
    """

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("Handler", (self.handler_class,), {"sandbox": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        # A client that gave up (a timeout test, a closed stream) leaves a broken pipe behind: expected.
        self.server.handle_error = lambda request, client_address: None
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                       name=f"sandbox-{type(self).__name__}")
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "SandboxHTTPServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
